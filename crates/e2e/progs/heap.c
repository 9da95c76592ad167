/* heap: usage `heap DIR [MIB [SEED]]` (default 256 MiB, seed from the clock).
 * Builds:
 *  - one malloc'ed block of MIB MiB (glibc mmaps it), every 8-byte word = mix(seed ^ offset);
 *  - 2000 small malloc'ed chunks (brk heap), each filled with its own pattern;
 *  - a 32 MiB anonymous mmap region, per 4 KiB page p: p%4==0 or 3 patterned, p%4==1 never touched
 *    (must read back as zero), p%4==2 written then MADV_DONTNEED (zero again); every page with
 *    p%64==HOLE is unmapped (holes: must stay unmapped; never the last page: a hole at the region's
 *    end joins the free space above it, where a later mmap (the read-only region) may land);
 *  - a 1 MiB patterned region made read-only with mprotect (must stay read-only).
 * Then idles (10 ms polls) until go and verifies every byte of all of it.
 * Corrupt switches: "heap" (a flipped byte in the big block), "small" (a small chunk), "region"
 * (an untouched page written), "hole" (a hole mapped), "readonly" (the read-only region made
 * writable). */
#include "common.h"

#include <sys/mman.h>

#define PAGE 4096UL
#define REGION_PAGES 8192UL /* 32 MiB */
#define RO_BYTES (1UL << 20)
#define SMALL_CHUNKS 2000
#define HOLE 62UL /* p % 64 of the pages unmapped inside the region */

static uint64_t seed;

static inline uint64_t pattern(uint64_t tag, uint64_t off)
{
	return e2e_mix(seed ^ (tag << 56) ^ off);
}

static void fill(uint64_t *w, size_t bytes, uint64_t tag)
{
	for (size_t i = 0; i < bytes / 8; i++)
		w[i] = pattern(tag, i * 8);
}

/* Returns the index of the first wrong word, or (size_t)-1. */
static size_t check(const uint64_t *w, size_t bytes, uint64_t tag)
{
	for (size_t i = 0; i < bytes / 8; i++)
		if (w[i] != pattern(tag, i * 8))
			return i;
	return (size_t)-1;
}

static int is_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* The line of /proc/self/maps for the mapping that contains addr ("" if none). */
static void maps_line(const void *addr, char *out, size_t size)
{
	out[0] = 0;
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (unsigned long)addr >= lo &&
		    (unsigned long)addr < hi) {
			line[strcspn(line, "\n")] = 0;
			snprintf(out, size, "%s", line);
			break;
		}
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	e2e_init(argc, argv, "[MIB [SEED]]");
	unsigned long mib = argc > 2 ? strtoul(argv[2], NULL, 0) : 256;
	seed = argc > 3 ? strtoull(argv[3], NULL, 0) : (uint64_t)e2e_mono_ns() * 0x2545f4914f6cdd1dULL;
	if (mib == 0 || mib > (1UL << 20))
		E2E_DIE("bad size %lu MiB", mib);
	size_t big_bytes = mib << 20;

	int64_t t0 = e2e_mono_ns();
	uint64_t *big = malloc(big_bytes);
	if (!big)
		E2E_DIE("malloc %lu MiB failed", mib);
	fill(big, big_bytes, 1);

	uint64_t *small[SMALL_CHUNKS];
	for (int i = 0; i < SMALL_CHUNKS; i++) {
		size_t sz = 64 + (size_t)(i % 37) * 40;
		small[i] = malloc(sz);
		if (!small[i])
			E2E_DIE("malloc small chunk %d", i);
		fill(small[i], sz, 0x10 + (uint64_t)i);
	}

	unsigned char *region = mmap(NULL, REGION_PAGES * PAGE, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		E2E_DIE("mmap region: %s", strerror(errno));
	for (unsigned long p = 0; p < REGION_PAGES; p++) {
		if (p % 4 != 1)
			fill((uint64_t *)(region + p * PAGE), PAGE, 2 + p % 4);
		if (p % 4 == 2 && madvise(region + p * PAGE, PAGE, MADV_DONTNEED) != 0)
			E2E_DIE("madvise: %s", strerror(errno));
	}
	for (unsigned long p = HOLE; p < REGION_PAGES; p += 64)
		if (munmap(region + p * PAGE, PAGE) != 0)
			E2E_DIE("munmap hole: %s", strerror(errno));

	uint64_t *ro = mmap(NULL, RO_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ro == MAP_FAILED)
		E2E_DIE("mmap read-only region: %s", strerror(errno));
	fill(ro, RO_BYTES, 7);
	if (mprotect(ro, RO_BYTES, PROT_READ) != 0)
		E2E_DIE("mprotect: %s", strerror(errno));

	printf("heap: %lu MiB + region + read-only region built in %" PRId64 " ms, seed %#" PRIx64 "\n",
	       mib, (e2e_mono_ns() - t0) / 1000000, seed);
	e2e_ready();
	e2e_wait_go(10);

	if (e2e_corrupt("heap"))
		((unsigned char *)big)[big_bytes / 3 + 5] ^= 0x40;
	if (e2e_corrupt("small"))
		((unsigned char *)small[SMALL_CHUNKS / 2])[9] ^= 1;
	if (e2e_corrupt("region"))
		region[5 * PAGE + 100] = 1;
	if (e2e_corrupt("hole") &&
	    mmap(region + (64 + HOLE) * PAGE, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
		    MAP_FAILED)
		E2E_DIE("mmap into a hole: %s", strerror(errno));
	if (e2e_corrupt("readonly") && mprotect(ro, RO_BYTES, PROT_READ | PROT_WRITE) != 0)
		E2E_DIE("mprotect: %s", strerror(errno));

	t0 = e2e_mono_ns();
	size_t bad = check(big, big_bytes, 1);
	E2E_CHECK(bad == (size_t)-1, "big block: word at offset %zu is %#" PRIx64 ", want %#" PRIx64,
		  bad * 8, bad == (size_t)-1 ? 0 : big[bad], bad == (size_t)-1 ? 0 : pattern(1, bad * 8));
	for (int i = 0; i < SMALL_CHUNKS; i++) {
		size_t sz = 64 + (size_t)(i % 37) * 40;
		bad = check(small[i], sz, 0x10 + (uint64_t)i);
		if (!E2E_CHECK(bad == (size_t)-1, "small chunk %d: word %zu wrong", i, bad))
			break;
	}
	unsigned long wrong_pages = 0, first_wrong = 0;
	for (unsigned long p = 0; p < REGION_PAGES; p++) {
		unsigned char *pg = region + p * PAGE;
		int ok;
		if (p % 64 == HOLE) {
			unsigned char vec;
			ok = mincore(pg, PAGE, &vec) != 0 && errno == ENOMEM;
		} else if (p % 4 == 1 || p % 4 == 2) {
			ok = is_zero(pg, PAGE);
		} else {
			ok = check((uint64_t *)pg, PAGE, 2 + p % 4) == (size_t)-1;
		}
		if (!ok && wrong_pages++ == 0)
			first_wrong = p;
	}
	/* What covers the first wrong page (a mapping in a hole: which one, to find who made it). */
	char mapped[512];
	maps_line(region + first_wrong * PAGE, mapped, sizeof(mapped));
	E2E_CHECK(wrong_pages == 0,
		  "region: %lu wrong pages, first page %lu (kind %lu: 0/3 pattern, 1 untouched, "
		  "2 dontneed, %lu hole) at %p, mapped as '%s'",
		  wrong_pages, first_wrong, first_wrong % 64 == HOLE ? HOLE : first_wrong % 4, HOLE,
		  (void *)(region + first_wrong * PAGE), mapped);
	bad = check(ro, RO_BYTES, 7);
	E2E_CHECK(bad == (size_t)-1, "read-only region: word %zu wrong", bad);
	char ro_line[512], perms[5] = "";
	maps_line(ro, ro_line, sizeof(ro_line));
	sscanf(ro_line, "%*x-%*x %4s", perms);
	E2E_CHECK(strncmp(perms, "r--p", 4) == 0, "read-only region has permissions '%s', want r--p",
		  perms);
	printf("heap: verified in %" PRId64 " ms\n", (e2e_mono_ns() - t0) / 1000000);
	e2e_finish();
}
