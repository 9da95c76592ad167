/* tree100: a tree of 100 small processes (the trees benchmark, benches/trees.rs).
 *
 * The root forks 9 group processes G1..G9, each of which forks 10 leaves L1..L10: 1 + 9 + 90 =
 * 100 processes. Every process fills 16 KiB of its own memory with a pattern derived from its
 * place in the tree, then polls for <dir>/go every 5 ms. The root writes <dir>/ready once all
 * 99 others reported (one byte each on a pipe).
 *
 * After go, every process checks its own pattern, then reaps its children, requiring each to be
 * the pid it forked and to exit with its index (1..10 for leaves, 1..9 for groups); a process
 * whose check fails exits 100. The root writes the result.
 *
 * Corrupt switch: `pattern` (leaf 5 of group 3 damages its memory before checking).
 */
#include "common.h"

#include <sys/wait.h>

#define GROUPS 9
#define LEAVES 10
#define WORDS (16384 / 8)

static uint64_t pattern[WORDS];
static int ready_pipe[2];

static void fill(uint64_t seed)
{
	for (int i = 0; i < WORDS; i++)
		pattern[i] = e2e_mix(seed * WORDS + i);
}

static int pattern_ok(uint64_t seed)
{
	for (int i = 0; i < WORDS; i++)
		if (pattern[i] != e2e_mix(seed * WORDS + i))
			return 0;
	return 1;
}

/* Reaps `n` children, which must be `pids[i]` exiting with status i + 1; returns 1 if all did. */
static int reap(const pid_t *pids, int n)
{
	int ok = 1;
	for (int i = 0; i < n; i++) {
		int st = 0;
		pid_t w = waitpid(pids[i], &st, 0);
		if (!E2E_CHECK(w == pids[i] && WIFEXITED(st) && WEXITSTATUS(st) == i + 1,
			       "child %d (pid %d) of pid %d: waitpid %d, status %#x", i + 1, (int)pids[i],
			       (int)getpid(), (int)w, st))
			ok = 0;
	}
	return ok;
}

static void wait_go(void)
{
	while (!e2e_go())
		e2e_sleep_ns(5000000);
}

static _Noreturn void leaf(int g, int l)
{
	fill(100 + g * 100 + l);
	if (write(ready_pipe[1], "l", 1) != 1)
		_exit(101);
	wait_go();
	if (g == 3 && l == 5 && e2e_corrupt("pattern"))
		pattern[7] ^= 1;
	if (!pattern_ok(100 + g * 100 + l)) {
		fprintf(stderr, "tree100: leaf %d of group %d: its memory changed\n", l, g);
		_exit(100);
	}
	_exit(l);
}

static _Noreturn void group(int g)
{
	fill(g);
	pid_t leaves[LEAVES];
	for (int l = 0; l < LEAVES; l++) {
		leaves[l] = fork();
		if (leaves[l] < 0)
			_exit(102);
		if (leaves[l] == 0)
			leaf(g, l + 1);
	}
	if (write(ready_pipe[1], "g", 1) != 1)
		_exit(101);
	wait_go();
	int ok = pattern_ok(g) && reap(leaves, LEAVES);
	_exit(ok ? g : 100);
}

int main(int argc, char **argv)
{
	e2e_init(argc, argv, "");
	if (pipe(ready_pipe) < 0)
		E2E_DIE("pipe: %s", strerror(errno));
	fill(0);
	pid_t groups[GROUPS];
	for (int g = 0; g < GROUPS; g++) {
		groups[g] = fork();
		if (groups[g] < 0)
			E2E_DIE("fork: %s", strerror(errno));
		if (groups[g] == 0)
			group(g + 1);
	}
	close(ready_pipe[1]);
	char buf[128];
	int got = 0;
	while (got < GROUPS * (LEAVES + 1)) {
		ssize_t n = read(ready_pipe[0], buf, sizeof(buf));
		if (n <= 0)
			E2E_DIE("a member died before it was ready");
		got += n;
	}
	close(ready_pipe[0]);
	e2e_ready();
	wait_go();
	E2E_CHECK(pattern_ok(0), "the root's memory changed");
	reap(groups, GROUPS);
	e2e_finish();
}
