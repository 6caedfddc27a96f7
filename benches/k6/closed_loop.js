// Closed loop: VUS virtual users, each sending its next request as soon as
// the previous answer arrives, for DURATION: the most requests per second
// the target serves to this many concurrent clients.
//
//   k6 run -e TARGET=http://127.0.0.1:8080/ -e VUS=64 benches/k6/closed_loop.js
//
// Environment, besides common.js's:
//   VUS      concurrent virtual users                        (64)
//   MIN_RPS  threshold: requests per second must exceed this  (1)
//
// Thresholds fail the run (exit code 99) when the target errs on more than
// 1% of requests or serves fewer than MIN_RPS requests per second.

import { DURATION, TREND_STATS, request } from './common.js';

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: TREND_STATS,
  scenarios: {
    closed_loop: {
      executor: 'constant-vus',
      vus: parseInt(__ENV.VUS || '64', 10),
      duration: DURATION,
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    http_reqs: [`rate>${parseFloat(__ENV.MIN_RPS || '1')}`],
  },
};

export default request;
