// Shared by the k6 scripts in this folder: target, users and the request.
//
// Environment (all optional):
//   TARGET      full URL to request             (http://127.0.0.1:18080/api/items/1)
//   USERS       distinct users to spread over   (1000)
//   KEY_HEADER  header carrying the user's key  (x-api-key; "" sends none)
//   KEY_PREFIX  key = KEY_PREFIX + user number  (k_bench_)
//   DURATION    length of the measured phase    (15s)
//
// Each iteration picks a user from its VU and iteration numbers, so every VU
// walks through all users and about USERS distinct keys reach the target in
// every phase, whatever the number of VUs.

import http from 'k6/http';
import { check } from 'k6';

export const TARGET = __ENV.TARGET || 'http://127.0.0.1:18080/api/items/1';
export const USERS = parseInt(__ENV.USERS || '1000', 10);
export const KEY_HEADER = __ENV.KEY_HEADER === undefined ? 'x-api-key' : __ENV.KEY_HEADER;
export const KEY_PREFIX = __ENV.KEY_PREFIX || 'k_bench_';
export const DURATION = __ENV.DURATION || '15s';

// Latency figures the summary (and --summary-export) reports.
export const TREND_STATS = ['avg', 'min', 'med', 'p(50)', 'p(90)', 'p(99)', 'max'];

// Header objects built once: building them per request would cost the load
// generator CPU that the target could have used.
const HEADERS = [];
for (let u = 0; u < USERS; u++) {
  const headers = {};
  if (KEY_HEADER) {
    headers[KEY_HEADER] = `${KEY_PREFIX}${u}`;
  }
  HEADERS.push({ headers });
}

// One GET as user ((VU * 7919 + iteration) mod USERS); 200 is success.
export function request() {
  const user = (__VU * 7919 + __ITER) % USERS;
  const res = http.get(TARGET, HEADERS[user]);
  check(res, { 'status is 200': (r) => r.status === 200 });
}
