// Constant arrival rate: RATE requests per second for DURATION, whatever the
// target's latency (open model), to read p50 and p99 at a known load.
//
//   k6 run -e TARGET=http://127.0.0.1:8080/ -e RATE=2000 benches/k6/constant_rate.js
//
// Environment, besides common.js's:
//   RATE      requests per second                                  (1000)
//   PRE_VUS   VUs allocated up front                               (64)
//   MAX_VUS   VUs k6 may add when responses are slow                (512)
//   P99_MS    threshold: p99 latency must stay under this (ms)      (50)
//   MAX_DROP  threshold: share of scheduled requests k6 could not
//             start (no VU free), 0..1                              (0.01)
//
// Thresholds fail the run (exit code 99) when the target errs on more than
// 1% of requests, misses P99_MS, or falls so far behind that k6 drops
// scheduled requests.

import { DURATION, TREND_STATS, request } from './common.js';

const RATE = parseInt(__ENV.RATE || '1000', 10);
const P99_MS = parseFloat(__ENV.P99_MS || '50');
const MAX_DROP = parseFloat(__ENV.MAX_DROP || '0.01');
const durationSecs = parseFloat(DURATION) * (DURATION.endsWith('m') ? 60 : 1);

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: TREND_STATS,
  scenarios: {
    constant_rate: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: parseInt(__ENV.PRE_VUS || '64', 10),
      maxVUs: parseInt(__ENV.MAX_VUS || '512', 10),
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    http_req_duration: [`p(99)<${P99_MS}`],
    dropped_iterations: [`count<=${Math.ceil(RATE * durationSecs * MAX_DROP)}`],
  },
};

export default request;
