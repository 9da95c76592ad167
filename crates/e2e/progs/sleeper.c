/* sleeper: usage `sleeper DIR [PERIOD_MS]` (default 1000). Sleeps PERIOD_MS in a loop, rotating
 * through nanosleep, relative clock_nanosleep(CLOCK_MONOTONIC) and absolute clock_nanosleep
 * (TIMER_ABSTIME), counting wakeups and measuring each sleep with CLOCK_MONOTONIC; so a dump almost
 * always finds it inside a sleep (an interrupted, restartable syscall).
 * After go (checked after each wakeup): every sleep lasted at least the period (an absolute sleep
 * ended at or after its deadline) and there were at least 3 wakeups.
 * Corrupt switch: "sleep" (records a short sleep). */
#include "common.h"

int main(int argc, char **argv)
{
	e2e_init(argc, argv, "[PERIOD_MS]");
	int64_t period = (argc > 2 ? strtoll(argv[2], NULL, 0) : 1000) * 1000000LL;
	if (period <= 0)
		E2E_DIE("bad period");
	uint64_t wakeups = 0, short_sleeps = 0, kinds[3] = { 0, 0, 0 };
	int64_t shortest = INT64_MAX, longest = 0;
	for (uint64_t i = 0;; i++) {
		if (i == 1)
			e2e_ready();
		if (i > 3 && e2e_go())
			break;
		int kind = (int)(i % 3);
		struct timespec req = { .tv_sec = period / 1000000000LL, .tv_nsec = period % 1000000000LL };
		struct timespec rem;
		int64_t t0 = e2e_mono_ns(), deadline = t0 + period;
		int rc;
		switch (kind) {
		case 0:
			while ((rc = nanosleep(&req, &rem)) != 0 && errno == EINTR)
				req = rem;
			if (rc != 0)
				E2E_DIE("nanosleep: %s", strerror(errno));
			break;
		case 1:
			while ((rc = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem)) == EINTR)
				req = rem;
			if (rc != 0)
				E2E_DIE("clock_nanosleep: %s", strerror(rc));
			break;
		default: {
			struct timespec abs = { .tv_sec = deadline / 1000000000LL,
						.tv_nsec = deadline % 1000000000LL };
			while ((rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs, NULL)) == EINTR)
				;
			if (rc != 0)
				E2E_DIE("clock_nanosleep(TIMER_ABSTIME): %s", strerror(rc));
		}
		}
		int64_t slept = e2e_mono_ns() - t0;
		wakeups++;
		kinds[kind]++;
		if (slept < period)
			short_sleeps++;
		if (slept < shortest)
			shortest = slept;
		if (slept > longest)
			longest = slept;
		printf("sleeper: wakeup %" PRIu64 " (kind %d) after %" PRId64 " us\n", wakeups, kind,
		       slept / 1000);
	}
	if (e2e_corrupt("sleep"))
		short_sleeps++;
	E2E_CHECK(wakeups >= 3, "only %" PRIu64 " wakeups", wakeups);
	E2E_CHECK(short_sleeps == 0,
		  "%" PRIu64 " of %" PRIu64 " sleeps were shorter than %" PRId64 " ns (shortest %" PRId64
		  " ns)",
		  short_sleeps, wakeups, period, shortest);
	printf("sleeper: %" PRIu64 " wakeups (%" PRIu64 "/%" PRIu64 "/%" PRIu64
	       " per kind), sleeps %" PRId64 "..%" PRId64 " us\n",
	       wakeups, kinds[0], kinds[1], kinds[2], shortest / 1000, longest / 1000);
	e2e_finish();
}
