/* forkserver: a server that forked its workers, with a zombie and a process group of its own.
 *
 * The root forks three workers W0..W2. Each worker serves requests on its own pair of pipes:
 * it reads a number x and answers "<x*x + i> <pid> <ppid> <pgid> <sid>" (i = its index), and
 * keeps a running sum of what it served in memory. W2 first makes itself the leader of a new
 * process group and forks a helper H (in W2's group) that counts in memory; W2 asks H, through
 * another pipe pair, for its count at the end. The root also forks Z, which exits with status 42
 * at once and is not reaped: a zombie. The root sends requests round-robin every 2 ms.
 *
 * After <dir>/go, the root checks: every worker still answers right; each still has the pid it
 * had before the dump, the root as its parent, its process group (W0, W1: the root's; W2: its
 * own) and the root's session; Z is still an unreaped zombie of the root with exit status 42
 * (waitid WNOWAIT, then waitpid reaps it); H answers through W2 and still counts; then it tells
 * the workers to stop: each answers with the sum of everything it served (which the root
 * compares with its own) and exits 0; the root reaps them and requires status 0.
 *
 * With a second argument HOSTNAME (the test runs it in a UTS namespace of its own), the root also
 * checks the host name is HOSTNAME.
 *
 * Corrupt switches: `answer` (W1 answers one request wrong), `sum` (W0 misreports its sum),
 * `zombie` (the root reaps Z before checking), `hostname` (the root changes the host name).
 */
#include "common.h"

#include <signal.h>
#include <sys/wait.h>

#define WORKERS 3

struct link {
	int to[2], from[2];
};

static struct link links[WORKERS], helper;

static void put(int fd, const char *s)
{
	size_t len = strlen(s);
	if (write(fd, s, len) != (ssize_t)len)
		E2E_DIE("write: %s", strerror(errno));
}

static void get(int fd, char *buf, size_t size)
{
	size_t n = 0;
	while (n + 1 < size) {
		ssize_t r = read(fd, buf + n, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			E2E_DIE("read: %s", r < 0 ? strerror(errno) : "end of file");
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = 0;
}

static _Noreturn void run_helper(void)
{
	volatile unsigned long count = 0;
	int fl = fcntl(helper.to[0], F_GETFL);
	fcntl(helper.to[0], F_SETFL, fl | O_NONBLOCK);
	for (;;) {
		count++;
		char c;
		if (read(helper.to[0], &c, 1) == 1) {
			char msg[64];
			snprintf(msg, sizeof(msg), "%lu %d %d\n", count, (int)getppid(), (int)getpgid(0));
			put(helper.from[1], msg);
			if (c == 'q')
				_exit(0);
		}
		e2e_sleep_ns(1000000);
	}
}

static _Noreturn void run_worker(int i)
{
	pid_t h = 0;
	if (i == WORKERS - 1) {
		if (setpgid(0, 0) < 0)
			E2E_DIE("setpgid: %s", strerror(errno));
		h = fork();
		if (h < 0)
			E2E_DIE("fork helper: %s", strerror(errno));
		if (h == 0)
			run_helper();
	}
	unsigned long long sum = 0;
	int wrong_once = 0;
	char req[64];
	for (;;) {
		get(links[i].to[0], req, sizeof(req));
		char msg[160];
		if (!strcmp(req, "check")) {
			/* Verification begins: load the corrupt switches. */
			wrong_once = i == 1 && e2e_corrupt("answer");
			put(links[i].from[1], "ok\n");
			continue;
		}
		if (!strcmp(req, "helper")) {
			char hmsg[64];
			put(helper.to[1], "?");
			get(helper.from[0], hmsg, sizeof(hmsg));
			snprintf(msg, sizeof(msg), "%d %s\n", (int)h, hmsg);
			put(links[i].from[1], msg);
			continue;
		}
		if (!strcmp(req, "stop")) {
			if (h) {
				char hmsg[64];
				put(helper.to[1], "q");
				get(helper.from[0], hmsg, sizeof(hmsg));
				int st;
				if (waitpid(h, &st, 0) != h || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
					_exit(4);
			}
			if (i == 0 && e2e_corrupt("sum"))
				sum++;
			snprintf(msg, sizeof(msg), "%llu\n", sum);
			put(links[i].from[1], msg);
			_exit(0);
		}
		unsigned long long x = strtoull(req, NULL, 10);
		unsigned long long y = x * x + i + (wrong_once ? 1 : 0);
		wrong_once = 0;
		sum += y;
		snprintf(msg, sizeof(msg), "%llu %d %d %d %d\n", y, (int)getpid(), (int)getppid(),
			 (int)getpgid(0), (int)getsid(0));
		put(links[i].from[1], msg);
	}
}

int main(int argc, char **argv)
{
	e2e_init(argc, argv, "[HOSTNAME]");
	const char *want_host = argc > 2 ? argv[2] : NULL;
	if (pipe(helper.to) < 0 || pipe(helper.from) < 0)
		E2E_DIE("pipe: %s", strerror(errno));
	pid_t workers[WORKERS];
	for (int i = 0; i < WORKERS; i++) {
		if (pipe(links[i].to) < 0 || pipe(links[i].from) < 0)
			E2E_DIE("pipe: %s", strerror(errno));
		workers[i] = fork();
		if (workers[i] < 0)
			E2E_DIE("fork: %s", strerror(errno));
		if (workers[i] == 0)
			run_worker(i);
	}
	pid_t z = fork();
	if (z < 0)
		E2E_DIE("fork: %s", strerror(errno));
	if (z == 0)
		_exit(42);
	pid_t me = getpid(), my_pgid = getpgid(0), my_sid = getsid(0);
	unsigned long long sums[WORKERS] = { 0 };
	char ans[160];
	int verifying = 0;
	for (unsigned long long x = 1;; x++) {
		int i = x % WORKERS;
		char req[32];
		snprintf(req, sizeof(req), "%llu\n", x);
		put(links[i].to[1], req);
		get(links[i].from[0], ans, sizeof(ans));
		unsigned long long y;
		int pid, ppid, pgid, sid;
		if (sscanf(ans, "%llu %d %d %d %d", &y, &pid, &ppid, &pgid, &sid) != 5)
			E2E_DIE("worker %d said %s", i, ans);
		sums[i] += y;
		if (verifying) {
			E2E_CHECK(y == x * x + i, "worker %d answered %llu to %llu", i, y, x);
			E2E_CHECK(pid == workers[i], "worker %d is pid %d, it was %d", i, pid,
				  (int)workers[i]);
			E2E_CHECK(ppid == me, "worker %d has parent %d, not %d", i, ppid, (int)me);
			pid_t want_pgid = i == WORKERS - 1 ? workers[i] : my_pgid;
			E2E_CHECK(pgid == want_pgid, "worker %d is in group %d, want %d", i, pgid,
				  (int)want_pgid);
			E2E_CHECK(sid == my_sid, "worker %d is in session %d, want %d", i, sid,
				  (int)my_sid);
			if (++verifying > 30)
				break;
		}
		if (x == 300)
			e2e_ready();
		if (!verifying && x > 300 && e2e_go()) {
			verifying = 1;
			for (int j = 0; j < WORKERS; j++) {
				put(links[j].to[1], "check\n");
				get(links[j].from[0], ans, sizeof(ans));
			}
		}
		e2e_sleep_ns(2000000);
	}

	if (want_host) {
		if (e2e_corrupt("hostname"))
			sethostname("corrupted", 9);
		char host[256] = { 0 };
		gethostname(host, sizeof(host) - 1);
		E2E_CHECK(!strcmp(host, want_host), "the host name is %s, want %s", host, want_host);
	}

	/* The zombie. */
	if (e2e_corrupt("zombie"))
		waitpid(z, NULL, 0);
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	int r = waitid(P_PID, z, &si, WEXITED | WNOHANG | WNOWAIT);
	if (E2E_CHECK(r == 0 && si.si_pid == z, "the zombie %d is not there (waitid %d: %s)", (int)z,
		      r, r ? strerror(errno) : "no child has exited")) {
		E2E_CHECK(si.si_code == CLD_EXITED && si.si_status == 42,
			  "the zombie exited with code %d status %d, want 42", si.si_code,
			  si.si_status);
		int st = 0;
		E2E_CHECK(waitpid(z, &st, WNOHANG) == z && WIFEXITED(st) && WEXITSTATUS(st) == 42,
			  "reaping the zombie gave status %#x", st);
	}

	/* The helper, through W2. */
	put(links[WORKERS - 1].to[1], "helper\n");
	get(links[WORKERS - 1].from[0], ans, sizeof(ans));
	int hpid, hppid, hpgid;
	unsigned long hcount1, hcount2;
	if (sscanf(ans, "%d %lu %d %d", &hpid, &hcount1, &hppid, &hpgid) != 4)
		E2E_DIE("W2 said %s about its helper", ans);
	E2E_CHECK(hppid == workers[WORKERS - 1] && hpgid == workers[WORKERS - 1],
		  "the helper %d has parent %d and group %d, want %d", hpid, hppid, hpgid,
		  (int)workers[WORKERS - 1]);
	e2e_sleep_ns(20000000);
	put(links[WORKERS - 1].to[1], "helper\n");
	get(links[WORKERS - 1].from[0], ans, sizeof(ans));
	if (sscanf(ans, "%*d %lu", &hcount2) != 1)
		E2E_DIE("W2 said %s about its helper", ans);
	E2E_CHECK(hcount2 > hcount1, "the helper does not count (%lu then %lu)", hcount1, hcount2);

	/* Stop the workers: sums and exit statuses. */
	for (int i = 0; i < WORKERS; i++) {
		put(links[i].to[1], "stop\n");
		get(links[i].from[0], ans, sizeof(ans));
		unsigned long long s = strtoull(ans, NULL, 10);
		E2E_CHECK(s == sums[i], "worker %d served %llu in all, the server counted %llu", i, s,
			  sums[i]);
		int st = 0;
		pid_t w = waitpid(workers[i], &st, 0);
		E2E_CHECK(w == workers[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0,
			  "worker %d (pid %d) ended with status %#x (waitpid %d)", i, (int)workers[i],
			  st, (int)w);
	}
	e2e_finish();
}
