/* signals: signal dispositions, the blocked mask and pending signals across checkpoint/restore.
 * Sets up:
 *  - SIGUSR1: SA_SIGINFO|SA_RESTART handler, sa_mask {SIGTERM, SIGRTMIN+3}; raised once before ready;
 *  - SIGUSR2: SA_SIGINFO|SA_RESTART|SA_NODEFER handler, sa_mask {SIGHUP, SIGWINCH}; blocked, then
 *    sigqueue()d to the process with value 0x1234 (pending in the shared queue);
 *  - SIGRTMIN+2: SA_SIGINFO handler; blocked, pthread_sigqueue()d twice (values 11, 22: two queued
 *    instances in the thread's private queue);
 *  - SIGINT ignored, SIGTERM default, SIGPIPE blocked too.
 * After go: every sigaction (handler, flags, mask), the blocked mask and the pending set are as
 * before; then it unblocks and checks the handlers ran with the right siginfo (signo, code, value,
 * sender pid and uid) and with the right mask, queued RT signals in order, and SIGUSR1 still works.
 * Corrupt switches: "sigaction", "mask", "pending", "ignore". */
#include "common.h"

#include <pthread.h>
#include <signal.h>

#define NSIGS 64

struct seen {
	volatile int count;
	int signo[4], code[4], value[4];
	pid_t pid[4];
	uid_t uid[4];
	sigset_t mask[4];
};
static struct seen s1, s2, srt;

static void record(struct seen *s, siginfo_t *si)
{
	int i = s->count;
	if (i < 4) {
		s->signo[i] = si->si_signo;
		s->code[i] = si->si_code;
		s->value[i] = si->si_value.sival_int;
		s->pid[i] = si->si_pid;
		s->uid[i] = si->si_uid;
		sigprocmask(SIG_BLOCK, NULL, &s->mask[i]);
	}
	s->count = i + 1;
}

static void h1(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	record(&s1, si);
}
static void h2(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	record(&s2, si);
}
static void hrt(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	record(&srt, si);
}

static void install(int sig, void (*fn)(int, siginfo_t *, void *), int flags, int m1, int m2)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fn;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, m1);
	sigaddset(&sa.sa_mask, m2);
	if (sigaction(sig, &sa, NULL) != 0)
		E2E_DIE("sigaction(%d): %s", sig, strerror(errno));
}

/* A comparable snapshot of one sigaction: handler, flags, mask membership. */
struct act {
	void *handler;
	unsigned long flags;
	char mask[NSIGS + 1];
};

static void get_act(int sig, struct act *a)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	memset(a, 0, sizeof(*a));
	if (sigaction(sig, NULL, &sa) != 0)
		E2E_DIE("sigaction(%d, NULL): %s", sig, strerror(errno));
	a->handler = (sa.sa_flags & SA_SIGINFO) ? (void *)sa.sa_sigaction : (void *)sa.sa_handler;
	a->flags = (unsigned long)sa.sa_flags;
	for (int s = 1; s <= NSIGS; s++)
		a->mask[s] = (char)sigismember(&sa.sa_mask, s);
}

static int same_set(const sigset_t *a, const sigset_t *b, int *which)
{
	for (int s = 1; s <= NSIGS; s++)
		if (sigismember(a, s) != sigismember(b, s)) {
			*which = s;
			return 0;
		}
	return 1;
}

int main(int argc, char **argv)
{
	e2e_init(argc, argv, "");
	const int rt = SIGRTMIN + 2;
	const int watched[] = { SIGUSR1, SIGUSR2, rt, SIGINT, SIGTERM, SIGHUP };
	const int nwatched = sizeof(watched) / sizeof(watched[0]);
	const pid_t orig_pid = getpid();

	install(SIGUSR1, h1, SA_SIGINFO | SA_RESTART, SIGTERM, SIGRTMIN + 3);
	install(SIGUSR2, h2, SA_SIGINFO | SA_RESTART | SA_NODEFER, SIGHUP, SIGWINCH);
	install(rt, hrt, SA_SIGINFO, SIGCHLD, SIGALRM);
	if (signal(SIGINT, SIG_IGN) == SIG_ERR)
		E2E_DIE("signal(SIGINT): %s", strerror(errno));

	if (kill(getpid(), SIGUSR1) != 0 || s1.count != 1)
		E2E_DIE("SIGUSR1 before the dump: kill or handler failed (count %d)", s1.count);

	sigset_t block, before_mask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, rt);
	sigaddset(&block, SIGPIPE);
	if (sigprocmask(SIG_BLOCK, &block, NULL) != 0)
		E2E_DIE("sigprocmask: %s", strerror(errno));
	if (sigqueue(getpid(), SIGUSR2, (union sigval){ .sival_int = 0x1234 }) != 0)
		E2E_DIE("sigqueue SIGUSR2: %s", strerror(errno));
	if (pthread_sigqueue(pthread_self(), rt, (union sigval){ .sival_int = 11 }) != 0 ||
	    pthread_sigqueue(pthread_self(), rt, (union sigval){ .sival_int = 22 }) != 0)
		E2E_DIE("pthread_sigqueue SIGRTMIN+2 failed");
	sigprocmask(SIG_BLOCK, NULL, &before_mask);
	struct act before[6];
	for (int i = 0; i < nwatched; i++)
		get_act(watched[i], &before[i]);

	e2e_ready();
	e2e_wait_go(10);

	if (e2e_corrupt("sigaction"))
		install(SIGUSR1, h1, SA_SIGINFO, SIGTERM, SIGRTMIN + 3);
	if (e2e_corrupt("mask")) {
		sigset_t pipe;
		sigemptyset(&pipe);
		sigaddset(&pipe, SIGPIPE);
		sigprocmask(SIG_UNBLOCK, &pipe, NULL);
	}
	if (e2e_corrupt("pending")) {
		sigset_t usr2;
		sigemptyset(&usr2);
		sigaddset(&usr2, SIGUSR2);
		sigwaitinfo(&usr2, NULL);
	}
	if (e2e_corrupt("ignore"))
		signal(SIGINT, SIG_DFL);

	for (int i = 0; i < nwatched; i++) {
		struct act now;
		get_act(watched[i], &now);
		E2E_CHECK(now.handler == before[i].handler, "signal %d: handler %p, was %p", watched[i],
			  now.handler, before[i].handler);
		E2E_CHECK(now.flags == before[i].flags, "signal %d: sa_flags %#lx, was %#lx", watched[i],
			  now.flags, before[i].flags);
		E2E_CHECK(memcmp(now.mask, before[i].mask, sizeof(now.mask)) == 0,
			  "signal %d: sa_mask changed", watched[i]);
	}
	sigset_t mask, pending;
	int which = 0;
	sigprocmask(SIG_BLOCK, NULL, &mask);
	E2E_CHECK(same_set(&mask, &before_mask, &which), "blocked mask differs at signal %d", which);
	sigpending(&pending);
	E2E_CHECK(sigismember(&pending, SIGUSR2) == 1, "SIGUSR2 is no longer pending");
	E2E_CHECK(sigismember(&pending, rt) == 1, "SIGRTMIN+2 is no longer pending");
	E2E_CHECK(sigismember(&pending, SIGUSR1) == 0, "SIGUSR1 is pending");
	E2E_CHECK(s1.count == 1 && s2.count == 0 && srt.count == 0,
		  "handler counts before unblocking: usr1 %d usr2 %d rt %d, want 1 0 0", s1.count,
		  s2.count, srt.count);

	if (sigprocmask(SIG_UNBLOCK, &block, NULL) != 0)
		E2E_DIE("sigprocmask unblock: %s", strerror(errno));
	if (kill(getpid(), SIGUSR1) != 0)
		E2E_DIE("kill SIGUSR1: %s", strerror(errno));

	if (E2E_CHECK(s2.count == 1, "SIGUSR2 handler ran %d times after unblocking, want 1", s2.count)) {
		E2E_CHECK(s2.signo[0] == SIGUSR2 && s2.code[0] == SI_QUEUE && s2.value[0] == 0x1234,
			  "SIGUSR2 siginfo: signo %d code %d value %#x", s2.signo[0], s2.code[0],
			  s2.value[0]);
		E2E_CHECK(s2.pid[0] == orig_pid && s2.uid[0] == getuid(),
			  "SIGUSR2 siginfo: sender pid %d uid %d, want %d %d", (int)s2.pid[0],
			  (int)s2.uid[0], (int)orig_pid, (int)getuid());
		E2E_CHECK(sigismember(&s2.mask[0], SIGHUP) && sigismember(&s2.mask[0], SIGWINCH) &&
				  !sigismember(&s2.mask[0], SIGUSR2),
			  "SIGUSR2 handler ran with the wrong mask (sa_mask/SA_NODEFER lost)");
	}
	if (E2E_CHECK(srt.count == 2, "SIGRTMIN+2 handler ran %d times, want 2 (queued)", srt.count)) {
		E2E_CHECK(srt.value[0] == 11 && srt.value[1] == 22 && srt.code[0] == SI_QUEUE &&
				  srt.code[1] == SI_QUEUE,
			  "SIGRTMIN+2 siginfo: values %d %d codes %d %d, want 11 22 SI_QUEUE",
			  srt.value[0], srt.value[1], srt.code[0], srt.code[1]);
		E2E_CHECK(sigismember(&srt.mask[0], rt) && sigismember(&srt.mask[0], SIGCHLD) &&
				  sigismember(&srt.mask[0], SIGALRM),
			  "SIGRTMIN+2 handler ran with the wrong mask");
	}
	if (E2E_CHECK(s1.count == 2, "SIGUSR1 handler ran %d times in all, want 2", s1.count)) {
		E2E_CHECK(s1.signo[1] == SIGUSR1 && s1.code[1] == SI_USER && s1.pid[1] == getpid(),
			  "SIGUSR1 siginfo after restore: signo %d code %d pid %d", s1.signo[1],
			  s1.code[1], (int)s1.pid[1]);
		E2E_CHECK(sigismember(&s1.mask[1], SIGTERM) && sigismember(&s1.mask[1], SIGRTMIN + 3) &&
				  sigismember(&s1.mask[1], SIGUSR1),
			  "SIGUSR1 handler ran with the wrong mask");
	}
	e2e_finish();
}
