//! A cheap guess at the kind of client behind a `User-Agent` string.
//!
//! Rules may give bots, phones and desktops different tiers, so every
//! request needs a device class, and the guess must cost about as much as
//! reading the header once: no allocation, no regex, no UA database. The
//! classifier makes one pass over the first [`SCAN_LIMIT`] bytes, and at
//! each byte looks only at the few markers that start with that letter
//! (a per-letter bit set built at compile time).
//!
//! Order of precedence, first that applies:
//! 1. `Bot`: a crawler, feed fetcher, monitor or headless browser that says
//!    so (`bot`, `crawl`, `spider`, `slurp`, `fetcher`, `headless`, ...), or
//!    any UA carrying a contact URL or e-mail address, which browsers never
//!    do. Checked first because crawlers imitate phones (Googlebot's
//!    smartphone UA contains `iPhone`).
//! 2. `Other` for HTTP tools and libraries (`curl`, `wget`, `python`, `java`,
//!    `go-http-client`, ...): scripted, but often a paying API client rather
//!    than a crawler, so rules should not lump them with bots. Checked
//!    before the OS markers because `Wget/1.14 (linux-gnu)` names an OS.
//! 3. `Mobile`: phones and tablets (`mobile`, `iphone`, `ipad`, `android`,
//!    `opera mini`, `midp`, ...).
//! 4. `Desktop`: a desktop OS (`windows`, `macintosh`, `x11`, `linux`,
//!    `freebsd`; Chrome OS says `X11; CrOS`).
//! 5. `Other` for anything else, including an empty UA.
//!
//! Known inaccuracies: UAs are self-reported, so a client can claim any
//! class; `bot` inside an unrelated word (a product named "Cubot") reads as
//! a bot; markers past the first 512 bytes are not seen; an app's own UA
//! without a platform token (`Reeder/2.1.1 CFNetwork/672.0.8`) is `Other`.

mod cache;

pub use cache::DeviceCache;

use headroom_config::Device;

/// Bytes of the UA examined; real UAs are 50 to 300 bytes, and this bounds
/// the cost of a hostile multi-kilobyte header.
pub const SCAN_LIMIT: usize = 512;

const BOT: u8 = 1;
const TOOL: u8 = 2;
const MOBILE: u8 = 4;
const DESKTOP: u8 = 8;

/// Lowercase markers and the class each one signals. At most 64 entries
/// (the per-letter index is a `u64` bit set).
const MARKERS: &[(&[u8], u8)] = &[
    (b"bot", BOT),
    (b"crawl", BOT),
    (b"spider", BOT),
    (b"slurp", BOT),
    (b"fetcher", BOT),
    (b"feedparser", BOT),
    (b"feedburner", BOT),
    (b"archiver", BOT),
    (b"externalhit", BOT),
    (b"headless", BOT),
    (b"phantomjs", BOT),
    (b"lighthouse", BOT),
    (b"preview", BOT),
    (b"http://", BOT),
    (b"https://", BOT),
    (b"@", BOT),
    (b"curl", TOOL),
    (b"wget", TOOL),
    (b"python", TOOL),
    (b"java/", TOOL),
    (b"go-http-client", TOOL),
    (b"okhttp", TOOL),
    (b"libwww", TOOL),
    (b"httpclient", TOOL),
    (b"ruby", TOOL),
    (b"perl", TOOL),
    (b"powershell", TOOL),
    (b"fetch", TOOL),
    (b"mobile", MOBILE),
    (b"iphone", MOBILE),
    (b"ipad", MOBILE),
    (b"ipod", MOBILE),
    (b"android", MOBILE),
    (b"opera mini", MOBILE),
    (b"blackberry", MOBILE),
    (b"windows phone", MOBILE),
    (b"kindle", MOBILE),
    (b"silk/", MOBILE),
    (b"midp", MOBILE),
    (b"wap browser", MOBILE),
    (b"symbian", MOBILE),
    (b"windows", DESKTOP),
    (b"macintosh", DESKTOP),
    (b"x11", DESKTOP),
    (b"linux", DESKTOP),
    (b"freebsd", DESKTOP),
];

/// For each ASCII byte, the set of markers (bit i = `MARKERS[i]`) whose
/// first byte it is.
const BY_FIRST_BYTE: [u64; 128] = {
    assert!(MARKERS.len() <= 64, "the index is a u64 bit set");
    let mut index = [0u64; 128];
    let mut i = 0;
    while i < MARKERS.len() {
        let first = MARKERS[i].0[0] as usize;
        index[first] |= 1 << i;
        i += 1;
    }
    index
};

/// Classifies a `User-Agent` header value; see the module docs for the
/// rules and their known inaccuracies. Never allocates; looks at no more
/// than [`SCAN_LIMIT`] bytes.
pub fn classify_user_agent(user_agent: &str) -> Device {
    let bytes = user_agent.as_bytes();
    let bytes = &bytes[..bytes.len().min(SCAN_LIMIT)];
    let mut seen = 0u8;
    for (at, &byte) in bytes.iter().enumerate() {
        let lower = byte.to_ascii_lowercase();
        let Some(&candidates) = BY_FIRST_BYTE.get(usize::from(lower)) else {
            continue;
        };

        // Walk the set bits: the markers starting with this byte.
        let mut left = candidates;
        while left != 0 {
            let (marker, class) = MARKERS[left.trailing_zeros() as usize];
            left &= left - 1;
            let rest = &bytes[at..];
            if rest.len() >= marker.len() && rest[..marker.len()].eq_ignore_ascii_case(marker) {
                if class == BOT {
                    return Device::Bot;
                }
                seen |= class;
            }
        }
    }

    if seen & TOOL != 0 {
        Device::Other
    } else if seen & MOBILE != 0 {
        Device::Mobile
    } else if seen & DESKTOP != 0 {
        Device::Desktop
    } else {
        Device::Other
    }
}

/// `Device::from_user_agent(ua)`: the classifier as an associated function
/// of the config's device enum (which this crate cannot extend directly).
pub trait FromUserAgent {
    /// Classifies a `User-Agent` value; see [`classify_user_agent`].
    fn from_user_agent(user_agent: &str) -> Self;
}

impl FromUserAgent for Device {
    fn from_user_agent(user_agent: &str) -> Self {
        classify_user_agent(user_agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real UAs, copied from /work/shared/traces/elastic_apache_logs.log
    /// unless noted.
    const CASES: &[(&str, Device)] = &[
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", Device::Bot),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 6_0 like Mac OS X) AppleWebKit/536.26 (KHTML, like Gecko) Version/6.0 Mobile/10A5376e Safari/8536.25 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            Device::Bot,
        ),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", Device::Bot),
        ("Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)", Device::Bot),
        ("Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)", Device::Bot),
        ("Mozilla/5.0 (compatible; Ezooms/1.0; help@moz.com)", Device::Bot),
        ("UniversalFeedParser/4.2-pre-314-svn +http://feedparser.org/", Device::Bot),
        ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", Device::Bot),
        ("Googlebot-Image/1.0", Device::Bot),
        ("Twitterbot/1.0", Device::Bot),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 6_1_3 like Mac OS X) AppleWebKit/536.26 (KHTML, like Gecko) Version/6.0 Mobile/10B329 Safari/8536.25",
            Device::Mobile,
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 7_0_4 like Mac OS X) AppleWebKit/537.51.1 (KHTML, like Gecko) Version/7.0 Mobile/11B554a Safari/9537.53",
            Device::Mobile,
        ),
        (
            "Mozilla/5.0 (Linux; Android 4.4.2; Nexus 5 Build/KOT49H) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/32.0.1700.99 Mobile Safari/537.36",
            Device::Mobile,
        ),
        ("Mozilla/5.0 (Android; Tablet; rv:27.0) Gecko/27.0 Firefox/27.0", Device::Mobile),
        ("Opera/9.80 (MTK; Opera Mini/2.1199/34.1244; U; id) Presto/2.8.119 Version/11.10", Device::Mobile),
        ("SAMSUNG-GT-E2232/1.0 Openwave/6.2.3 Profile/MIDP-2.0 Configuration/CLDC-1.1 UP.Browser/6.2.3.3.c.1.101 (GUI) MMP/2.0", Device::Mobile),
        (
            "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/32.0.1700.107 Safari/537.36",
            Device::Desktop,
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/33.0.1750.91 Safari/537.36",
            Device::Desktop,
        ),
        ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:27.0) Gecko/20100101 Firefox/27.0", Device::Desktop),
        ("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)", Device::Desktop),
        // Not in the trace: curl's own default UA.
        ("curl/8.5.0", Device::Other),
        ("Wget/1.14 (linux-gnu)", Device::Other),
        ("Python-urllib/2.7", Device::Other),
        ("Reeder/2.1.1 CFNetwork/672.0.8 Darwin/14.0.0", Device::Other),
        ("-", Device::Other),
        ("", Device::Other),
    ];

    #[test]
    fn real_user_agents_get_the_expected_class() {
        for &(user_agent, expected) in CASES {
            assert_eq!(classify_user_agent(user_agent), expected, "{user_agent}");
        }
    }

    #[test]
    fn matching_ignores_ascii_case() {
        assert_eq!(
            Device::from_user_agent("MOZILLA/5.0 (COMPATIBLE; BINGBOT/2.0)"),
            Device::Bot
        );
        assert_eq!(
            Device::from_user_agent("mozilla/5.0 (iphone; cpu iphone os 7_0)"),
            Device::Mobile
        );
    }

    #[test]
    fn markers_beyond_the_scan_limit_are_not_seen() {
        let padded = format!("{}Googlebot/2.1", "x".repeat(SCAN_LIMIT));
        assert_eq!(classify_user_agent(&padded), Device::Other);
        let inside = format!("{}Googlebot/2.1", "x".repeat(SCAN_LIMIT - 13));
        assert_eq!(classify_user_agent(&inside), Device::Bot);
    }

    #[test]
    fn non_ascii_bytes_are_skipped_safely() {
        assert_eq!(
            classify_user_agent("Ünïcödé (Windows NT 10.0) ✓"),
            Device::Desktop
        );
        // A scan limit inside a multi-byte character must not panic.
        let tricky = format!("{}é", "a".repeat(SCAN_LIMIT - 1));
        assert_eq!(classify_user_agent(&tricky), Device::Other);
    }
}
