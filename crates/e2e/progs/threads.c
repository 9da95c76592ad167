/* threads: 8 threads, each with its own state, sharing a mutex and a condition variable.
 *
 * Threads 0-2 ("counters") count in a mutex-protected loop: the shared counter and their own count
 * go up together under the mutex, with a short nanosleep every 64 turns. Threads 3-5 ("waiters")
 * block on a condition variable that the main thread broadcasts every 10 ms, counting wake-ups.
 * Thread 6 ("sleeper") sleeps 50 ms per turn in nanosleep and checks every sleep lasted >= 50 ms.
 * Thread 7 ("masked") blocks SIGUSR1 and SIGRTMIN+3 in its own signal mask (the other threads block
 * nothing), has SIGRTMIN+3 queued to itself (pthread_sigqueue, value 4242: pending for this thread
 * only) and runs on an alternate signal stack of its own, sleeping 10 ms per turn.
 * Every thread has its own name ("worker-N", PR_SET_NAME), keeps __thread state (an id, a magic
 * number, a 256-byte pattern) and a floating-point accumulator with a value of its own, updated in
 * registers every turn and checked exactly against an integer shadow.
 *
 * After `go`, the main thread lets the threads run 300 ms more, requires every thread to have made
 * progress in that time (they keep running after a restore), then tells them to verify and stop.
 * Each thread checks: gettid() equals the tid it recorded at start (the thread ids survive a
 * restore), its name, its TLS, its FP accumulator, its signal mask, its alternate signal stack
 * (SS_DISABLE for all but thread 7); thread 7 also that its queued signal is still pending and
 * carries its value, code and sender (queued to another thread, which blocks nothing, it would
 * have killed the process). The main thread checks that /proc/self/task lists exactly the process
 * and the 8 recorded tids, and that the shared counter equals the sum of the per-thread counts (no
 * increment lost or repeated).
 *
 * Corrupt switches: tid (the recorded tid of thread 0 is changed), tls (thread 2 damages its
 * pattern), fpu (thread 1 nudges its accumulator), sigmask (thread 7 unblocks SIGUSR1), altstack
 * (thread 7 disables its alternate stack), counter (the shared counter gets one increment more),
 * name (thread 3 renames itself), pending (thread 7 takes its queued signal early). */
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <dirent.h>
#include <sys/prctl.h>

#define NTHREADS 8
#define ALTSTACK_SIZE (64 * 1024)

enum role { COUNTER, WAITER, SLEEPER, MASKED };

static enum role role_of(int i)
{
	if (i < 3)
		return COUNTER;
	if (i < 6)
		return WAITER;
	return i == 6 ? SLEEPER : MASKED;
}

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static uint64_t shared_counter;   /* under mutex */
static uint64_t generation;       /* under mutex */
static uint64_t counts[NTHREADS]; /* under mutex: counter increments, waiter wake-ups */
static volatile uint64_t turns[NTHREADS]; /* sleeper / masked turns (own thread writes) */
static volatile int verify;       /* set by main: check and stop */
static volatile int started;      /* threads that recorded their tid */
static pid_t tids[NTHREADS];
static char failure[NTHREADS][256]; /* each thread's first failed check */
static unsigned nfail[NTHREADS];

static int corrupt_tls, corrupt_fpu, corrupt_sigmask, corrupt_altstack, corrupt_name,
	corrupt_pending;
static char *altstack_mem;

static __thread int tls_id = -1;
static __thread uint64_t tls_magic;
static __thread unsigned char tls_pattern[256];

static void tfail(int i, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tfail(int i, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (nfail[i]++ == 0)
		vsnprintf(failure[i], sizeof(failure[i]), fmt, ap);
	va_end(ap);
}

/* This thread's TLS pattern, through a pointer the compiler cannot see through (folding the loop's
 * offsets into a TLS relocation overflows it in static links). */
static unsigned char *pattern(void)
{
	unsigned char *p = tls_pattern;
	__asm__ volatile("" : "+r"(p));
	return p;
}

static pid_t my_tid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static sigset_t expected_mask(int i)
{
	sigset_t set;
	sigemptyset(&set);
	if (role_of(i) == MASKED) {
		sigaddset(&set, SIGUSR1);
		sigaddset(&set, SIGRTMIN + 3);
	}
	return set;
}

static void check_thread(int i, double acc, uint64_t shadow, double base)
{
	if (my_tid() != tids[i])
		tfail(i, "thread %d: gettid() is %d, it was %d", i, (int)my_tid(), (int)tids[i]);
	char name[16] = { 0 }, want_name[16];
	snprintf(want_name, sizeof(want_name), "worker-%d", i);
	if (i == 3 && corrupt_name)
		prctl(PR_SET_NAME, "renamed", 0, 0, 0);
	prctl(PR_GET_NAME, name, 0, 0, 0);
	if (strcmp(name, want_name) != 0)
		tfail(i, "thread %d: its name is \"%s\", want \"%s\"", i, name, want_name);
	unsigned char *pat = pattern();
	if (i == 2 && corrupt_tls)
		pat[77] ^= 0xff;
	if (tls_id != i)
		tfail(i, "thread %d: TLS id is %d", i, tls_id);
	if (tls_magic != e2e_mix(1000 + i))
		tfail(i, "thread %d: TLS magic is %#" PRIx64, i, tls_magic);
	for (int k = 0; k < 256; k++)
		if (pat[k] != (unsigned char)(e2e_mix(i * 256 + k) & 0xff)) {
			tfail(i, "thread %d: TLS pattern differs at byte %d", i, k);
			break;
		}
	if (i == 1 && corrupt_fpu)
		acc += 0.25;
	if (acc != base + (double)shadow)
		tfail(i, "thread %d: FP accumulator %.17g, want %.17g", i, acc, base + (double)shadow);

	if (role_of(i) == MASKED) {
		sigset_t rt;
		sigemptyset(&rt);
		sigaddset(&rt, SIGRTMIN + 3);
		struct timespec zero = { 0, 0 };
		siginfo_t info;
		if (corrupt_pending)
			sigtimedwait(&rt, &info, &zero);
		sigset_t pend;
		sigpending(&pend);
		if (!sigismember(&pend, SIGRTMIN + 3)) {
			tfail(i, "thread %d: SIGRTMIN+3 is no longer pending", i);
		} else if (sigtimedwait(&rt, &info, &zero) != SIGRTMIN + 3) {
			tfail(i, "thread %d: sigtimedwait for SIGRTMIN+3: %s", i, strerror(errno));
		} else if (info.si_code != SI_QUEUE || info.si_value.sival_int != 4242 ||
			   info.si_pid != getpid()) {
			tfail(i, "thread %d: SIGRTMIN+3 came with code %d value %d pid %d", i, info.si_code,
			      info.si_value.sival_int, (int)info.si_pid);
		}
	}
	if (i == 7 && corrupt_sigmask) {
		sigset_t u;
		sigemptyset(&u);
		sigaddset(&u, SIGUSR1);
		pthread_sigmask(SIG_UNBLOCK, &u, NULL);
	}
	sigset_t now, want = expected_mask(i);
	pthread_sigmask(SIG_BLOCK, NULL, &now);
	for (int s = 1; s < 65; s++)
		if (sigismember(&now, s) != sigismember(&want, s)) {
			tfail(i, "thread %d: signal mask differs at signal %d (blocked %d)", i, s,
			      sigismember(&now, s));
			break;
		}

	if (i == 7 && corrupt_altstack) {
		stack_t off = { .ss_flags = SS_DISABLE };
		sigaltstack(&off, NULL);
	}
	stack_t ss;
	if (sigaltstack(NULL, &ss) != 0) {
		tfail(i, "thread %d: sigaltstack: %s", i, strerror(errno));
	} else if (role_of(i) == MASKED) {
		if (ss.ss_sp != altstack_mem || ss.ss_size != ALTSTACK_SIZE || ss.ss_flags != 0)
			tfail(i, "thread %d: alternate signal stack is %p size %zu flags %d, want %p size %d flags 0",
			      i, ss.ss_sp, ss.ss_size, ss.ss_flags, (void *)altstack_mem, ALTSTACK_SIZE);
	} else if (!(ss.ss_flags & SS_DISABLE)) {
		tfail(i, "thread %d: has an alternate signal stack %p (flags %d), want none", i, ss.ss_sp,
		      ss.ss_flags);
	}
}

static void *worker(void *arg)
{
	int i = (int)(intptr_t)arg;
	tls_id = i;
	tls_magic = e2e_mix(1000 + i);
	unsigned char *pat = pattern();
	for (int k = 0; k < 256; k++)
		pat[k] = (unsigned char)(e2e_mix(i * 256 + k) & 0xff);
	tids[i] = my_tid();
	char name[16];
	snprintf(name, sizeof(name), "worker-%d", i);
	prctl(PR_SET_NAME, name, 0, 0, 0);

	if (role_of(i) == MASKED) {
		sigset_t m = expected_mask(i);
		pthread_sigmask(SIG_SETMASK, &m, NULL);
		union sigval v = { .sival_int = 4242 };
		if (pthread_sigqueue(pthread_self(), SIGRTMIN + 3, v) != 0)
			tfail(i, "thread %d: pthread_sigqueue failed", i);
		stack_t ss = { .ss_sp = altstack_mem, .ss_size = ALTSTACK_SIZE, .ss_flags = 0 };
		if (sigaltstack(&ss, NULL) != 0)
			tfail(i, "thread %d: setting the alternate stack: %s", i, strerror(errno));
	}
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);

	/* A value of this thread's own, kept in an FP register across the loop. */
	const double base = 1000.0 * (i + 1) + 0.125 * i;
	double acc = base;
	uint64_t shadow = 0;
	uint64_t seen = 0;
	while (!verify) {
		switch (role_of(i)) {
		case COUNTER:
			pthread_mutex_lock(&mutex);
			shared_counter++;
			counts[i]++;
			pthread_mutex_unlock(&mutex);
			if ((shadow & 63) == 0)
				e2e_sleep_ns(200 * 1000);
			break;
		case WAITER:
			pthread_mutex_lock(&mutex);
			while (generation == seen && !verify)
				pthread_cond_wait(&cond, &mutex);
			seen = generation;
			counts[i]++;
			pthread_mutex_unlock(&mutex);
			break;
		case SLEEPER: {
			int64_t t0 = e2e_mono_ns();
			struct timespec req = { .tv_sec = 0, .tv_nsec = 50 * 1000000L };
			while (nanosleep(&req, &req) != 0 && errno == EINTR)
				;
			int64_t took = e2e_mono_ns() - t0;
			if (took < 50 * 1000000LL)
				tfail(i, "thread %d: a 50 ms nanosleep took %" PRId64 " us (shorter than asked)",
				      i, took / 1000);
			turns[i]++;
			break;
		}
		case MASKED:
			e2e_sleep_ns(10 * 1000000LL);
			turns[i]++;
			break;
		}
		acc += 1.0;
		shadow++;
		if (acc != base + (double)shadow) {
			tfail(i, "thread %d: FP accumulator drifted to %.17g", i, acc);
			acc = base + (double)shadow;
		}
	}
	check_thread(i, acc, shadow, base);
	return NULL;
}

static uint64_t progress(int i)
{
	if (role_of(i) == COUNTER || role_of(i) == WAITER) {
		pthread_mutex_lock(&mutex);
		uint64_t v = counts[i];
		pthread_mutex_unlock(&mutex);
		return v;
	}
	return turns[i];
}

static void broadcast(void)
{
	pthread_mutex_lock(&mutex);
	generation++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&mutex);
}

int main(int argc, char **argv)
{
	e2e_init(argc, argv, "");
	altstack_mem = malloc(ALTSTACK_SIZE);
	if (!altstack_mem)
		E2E_DIE("malloc of the alternate stack");
	pthread_t th[NTHREADS];
	for (int i = 0; i < NTHREADS; i++)
		if (pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i) != 0)
			E2E_DIE("pthread_create %d", i);
	while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < NTHREADS)
		e2e_sleep_ns(1000000);
	e2e_ready();
	while (!e2e_go()) {
		broadcast();
		e2e_sleep_ns(10 * 1000000LL);
	}

	/* The threads must keep running after go (after a restore). */
	uint64_t before[NTHREADS];
	for (int i = 0; i < NTHREADS; i++)
		before[i] = progress(i);
	for (int k = 0; k < 30; k++) {
		broadcast();
		e2e_sleep_ns(10 * 1000000LL);
	}
	for (int i = 0; i < NTHREADS; i++) {
		uint64_t now = progress(i);
		E2E_CHECK(now > before[i], "thread %d made no progress in 300 ms (%" PRIu64 " turns)", i,
			  now);
	}

	corrupt_tls = e2e_corrupt("tls");
	corrupt_fpu = e2e_corrupt("fpu");
	corrupt_sigmask = e2e_corrupt("sigmask");
	corrupt_altstack = e2e_corrupt("altstack");
	corrupt_name = e2e_corrupt("name");
	corrupt_pending = e2e_corrupt("pending");

	/* Which tasks the process has, while every thread still runs. */
	char seen[NTHREADS + 1] = { 0 };
	int others = 0;
	DIR *d = opendir("/proc/self/task");
	if (!d)
		E2E_DIE("opendir /proc/self/task: %s", strerror(errno));
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		pid_t t = (pid_t)atoi(e->d_name);
		int found = t == getpid() ? NTHREADS : -1;
		for (int i = 0; i < NTHREADS && found < 0; i++)
			if (tids[i] == t)
				found = i;
		if (found < 0)
			others++;
		else
			seen[found] = 1;
	}
	closedir(d);
	E2E_CHECK(others == 0, "/proc/self/task lists %d task(s) that are not the recorded threads",
		  others);
	for (int i = 0; i <= NTHREADS; i++)
		E2E_CHECK(seen[i], "/proc/self/task does not list %s %d", i == NTHREADS ? "the process" : "thread",
			  i == NTHREADS ? (int)getpid() : (int)tids[i]);

	if (e2e_corrupt("tid"))
		tids[0] ^= 1;
	pthread_mutex_lock(&mutex);
	verify = 1;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&mutex);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);

	if (e2e_corrupt("counter"))
		shared_counter++;
	uint64_t sum = 0;
	for (int i = 0; i < 3; i++)
		sum += counts[i];
	E2E_CHECK(shared_counter == sum,
		  "shared counter is %" PRIu64 ", the counters counted %" PRIu64 " (lost or repeated)",
		  shared_counter, sum);
	for (int i = 0; i < NTHREADS; i++)
		if (nfail[i])
			e2e_failf("%s (%u failed checks in thread %d)", failure[i], nfail[i], i);
	printf("%s: counter %" PRIu64 ", waiters %" PRIu64 " %" PRIu64 " %" PRIu64 ", sleeper %" PRIu64
	       ", masked %" PRIu64 "\n",
	       e2e_name, shared_counter, counts[3], counts[4], counts[5], turns[6], turns[7]);
	e2e_finish();
}
