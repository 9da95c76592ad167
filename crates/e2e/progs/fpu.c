/* fpu: floating-point and vector computation in flight across checkpoint/restore.
 * Each round runs long inline-assembly loops that keep values live in registers the whole time, so a
 * dump almost always interrupts them with live state:
 *  - ymm0-15 (AVX): ymm0-6 += ymm15 (vpaddq), ymm7-13 += ymm14 (vaddpd, exact integer doubles);
 *  - x87 st(0)-st(7): st(1..7) += st(0) (fadd, 64-bit mantissa, exact);
 *  - if the CPU has AVX-512: zmm16-30 += zmm31 (vpaddq) with k1-k7 held live.
 * Every round checks the exact expected results, the x87 control word (round toward zero) and MXCSR
 * (round toward zero, checked through 1.0/10.0 rounding down), so wrong registers fail at once.
 * AVX code is compiled with per-function target attributes (target("avx2"), target("avx512f")) and
 * only runs after cpuid + xgetbv say the CPU and kernel support it; without AVX it says so and
 * checks x87/SSE only.
 * Corrupt switches: "ymm", "x87", "zmm", "mxcsr", "x87cw". */
#include "common.h"

#include <cpuid.h>

#define X87_CW 0x0F7F	 /* all exceptions masked, extended precision, round toward zero */
#define MXCSR_RZ 0x7F80 /* all exceptions masked, round toward zero */
#define TENTH_RZ 0x3FB9999999999999ULL
#define TENTH_RN 0x3FB999999999999AULL

static int have_avx, have_avx512;

static void detect(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return;
	int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
	if (!osxsave || !avx)
		return;
	unsigned lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	if ((lo & 6) != 6)
		return;
	have_avx = 1;
	if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && ((b >> 16) & 1) && (lo & 0xe6) == 0xe6)
		have_avx512 = 1;
}

__attribute__((target("avx2"))) static void ymm_spin(uint64_t in[16][4], uint64_t out[16][4],
						      uint64_t spins)
{
	__asm__ volatile("vmovdqu 0*32(%[in]), %%ymm0\n\t"
			 "vmovdqu 1*32(%[in]), %%ymm1\n\t"
			 "vmovdqu 2*32(%[in]), %%ymm2\n\t"
			 "vmovdqu 3*32(%[in]), %%ymm3\n\t"
			 "vmovdqu 4*32(%[in]), %%ymm4\n\t"
			 "vmovdqu 5*32(%[in]), %%ymm5\n\t"
			 "vmovdqu 6*32(%[in]), %%ymm6\n\t"
			 "vmovdqu 7*32(%[in]), %%ymm7\n\t"
			 "vmovdqu 8*32(%[in]), %%ymm8\n\t"
			 "vmovdqu 9*32(%[in]), %%ymm9\n\t"
			 "vmovdqu 10*32(%[in]), %%ymm10\n\t"
			 "vmovdqu 11*32(%[in]), %%ymm11\n\t"
			 "vmovdqu 12*32(%[in]), %%ymm12\n\t"
			 "vmovdqu 13*32(%[in]), %%ymm13\n\t"
			 "vmovdqu 14*32(%[in]), %%ymm14\n\t"
			 "vmovdqu 15*32(%[in]), %%ymm15\n\t"
			 "1:\n\t"
			 "vpaddq %%ymm15, %%ymm0, %%ymm0\n\t"
			 "vpaddq %%ymm15, %%ymm1, %%ymm1\n\t"
			 "vpaddq %%ymm15, %%ymm2, %%ymm2\n\t"
			 "vpaddq %%ymm15, %%ymm3, %%ymm3\n\t"
			 "vpaddq %%ymm15, %%ymm4, %%ymm4\n\t"
			 "vpaddq %%ymm15, %%ymm5, %%ymm5\n\t"
			 "vpaddq %%ymm15, %%ymm6, %%ymm6\n\t"
			 "vaddpd %%ymm14, %%ymm7, %%ymm7\n\t"
			 "vaddpd %%ymm14, %%ymm8, %%ymm8\n\t"
			 "vaddpd %%ymm14, %%ymm9, %%ymm9\n\t"
			 "vaddpd %%ymm14, %%ymm10, %%ymm10\n\t"
			 "vaddpd %%ymm14, %%ymm11, %%ymm11\n\t"
			 "vaddpd %%ymm14, %%ymm12, %%ymm12\n\t"
			 "vaddpd %%ymm14, %%ymm13, %%ymm13\n\t"
			 "dec %[n]\n\t"
			 "jnz 1b\n\t"
			 "vmovdqu %%ymm0, 0*32(%[out])\n\t"
			 "vmovdqu %%ymm1, 1*32(%[out])\n\t"
			 "vmovdqu %%ymm2, 2*32(%[out])\n\t"
			 "vmovdqu %%ymm3, 3*32(%[out])\n\t"
			 "vmovdqu %%ymm4, 4*32(%[out])\n\t"
			 "vmovdqu %%ymm5, 5*32(%[out])\n\t"
			 "vmovdqu %%ymm6, 6*32(%[out])\n\t"
			 "vmovdqu %%ymm7, 7*32(%[out])\n\t"
			 "vmovdqu %%ymm8, 8*32(%[out])\n\t"
			 "vmovdqu %%ymm9, 9*32(%[out])\n\t"
			 "vmovdqu %%ymm10, 10*32(%[out])\n\t"
			 "vmovdqu %%ymm11, 11*32(%[out])\n\t"
			 "vmovdqu %%ymm12, 12*32(%[out])\n\t"
			 "vmovdqu %%ymm13, 13*32(%[out])\n\t"
			 "vmovdqu %%ymm14, 14*32(%[out])\n\t"
			 "vmovdqu %%ymm15, 15*32(%[out])\n\t"
			 "vzeroupper\n\t"
			 : [n] "+r"(spins)
			 : [in] "r"(in), [out] "r"(out)
			 : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
			   "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory", "cc");
}

__attribute__((target("avx512f"))) static void zmm_spin(uint64_t in[16][8], uint64_t out[16][8],
							 uint16_t kin[7], uint16_t kout[7],
							 uint64_t spins)
{
	__asm__ volatile("kmovw 0(%[kin]), %%k1\n\t"
			 "kmovw 2(%[kin]), %%k2\n\t"
			 "kmovw 4(%[kin]), %%k3\n\t"
			 "kmovw 6(%[kin]), %%k4\n\t"
			 "kmovw 8(%[kin]), %%k5\n\t"
			 "kmovw 10(%[kin]), %%k6\n\t"
			 "kmovw 12(%[kin]), %%k7\n\t"
			 "vmovdqu64 0*64(%[in]), %%zmm16\n\t"
			 "vmovdqu64 1*64(%[in]), %%zmm17\n\t"
			 "vmovdqu64 2*64(%[in]), %%zmm18\n\t"
			 "vmovdqu64 3*64(%[in]), %%zmm19\n\t"
			 "vmovdqu64 4*64(%[in]), %%zmm20\n\t"
			 "vmovdqu64 5*64(%[in]), %%zmm21\n\t"
			 "vmovdqu64 6*64(%[in]), %%zmm22\n\t"
			 "vmovdqu64 7*64(%[in]), %%zmm23\n\t"
			 "vmovdqu64 8*64(%[in]), %%zmm24\n\t"
			 "vmovdqu64 9*64(%[in]), %%zmm25\n\t"
			 "vmovdqu64 10*64(%[in]), %%zmm26\n\t"
			 "vmovdqu64 11*64(%[in]), %%zmm27\n\t"
			 "vmovdqu64 12*64(%[in]), %%zmm28\n\t"
			 "vmovdqu64 13*64(%[in]), %%zmm29\n\t"
			 "vmovdqu64 14*64(%[in]), %%zmm30\n\t"
			 "vmovdqu64 15*64(%[in]), %%zmm31\n\t"
			 "1:\n\t"
			 "vpaddq %%zmm31, %%zmm16, %%zmm16\n\t"
			 "vpaddq %%zmm31, %%zmm17, %%zmm17\n\t"
			 "vpaddq %%zmm31, %%zmm18, %%zmm18\n\t"
			 "vpaddq %%zmm31, %%zmm19, %%zmm19\n\t"
			 "vpaddq %%zmm31, %%zmm20, %%zmm20\n\t"
			 "vpaddq %%zmm31, %%zmm21, %%zmm21\n\t"
			 "vpaddq %%zmm31, %%zmm22, %%zmm22\n\t"
			 "vpaddq %%zmm31, %%zmm23, %%zmm23\n\t"
			 "vpaddq %%zmm31, %%zmm24, %%zmm24\n\t"
			 "vpaddq %%zmm31, %%zmm25, %%zmm25\n\t"
			 "vpaddq %%zmm31, %%zmm26, %%zmm26\n\t"
			 "vpaddq %%zmm31, %%zmm27, %%zmm27\n\t"
			 "vpaddq %%zmm31, %%zmm28, %%zmm28\n\t"
			 "vpaddq %%zmm31, %%zmm29, %%zmm29\n\t"
			 "vpaddq %%zmm31, %%zmm30, %%zmm30\n\t"
			 "dec %[n]\n\t"
			 "jnz 1b\n\t"
			 "vmovdqu64 %%zmm16, 0*64(%[out])\n\t"
			 "vmovdqu64 %%zmm17, 1*64(%[out])\n\t"
			 "vmovdqu64 %%zmm18, 2*64(%[out])\n\t"
			 "vmovdqu64 %%zmm19, 3*64(%[out])\n\t"
			 "vmovdqu64 %%zmm20, 4*64(%[out])\n\t"
			 "vmovdqu64 %%zmm21, 5*64(%[out])\n\t"
			 "vmovdqu64 %%zmm22, 6*64(%[out])\n\t"
			 "vmovdqu64 %%zmm23, 7*64(%[out])\n\t"
			 "vmovdqu64 %%zmm24, 8*64(%[out])\n\t"
			 "vmovdqu64 %%zmm25, 9*64(%[out])\n\t"
			 "vmovdqu64 %%zmm26, 10*64(%[out])\n\t"
			 "vmovdqu64 %%zmm27, 11*64(%[out])\n\t"
			 "vmovdqu64 %%zmm28, 12*64(%[out])\n\t"
			 "vmovdqu64 %%zmm29, 13*64(%[out])\n\t"
			 "vmovdqu64 %%zmm30, 14*64(%[out])\n\t"
			 "vmovdqu64 %%zmm31, 15*64(%[out])\n\t"
			 "kmovw %%k1, 0(%[kout])\n\t"
			 "kmovw %%k2, 2(%[kout])\n\t"
			 "kmovw %%k3, 4(%[kout])\n\t"
			 "kmovw %%k4, 6(%[kout])\n\t"
			 "kmovw %%k5, 8(%[kout])\n\t"
			 "kmovw %%k6, 10(%[kout])\n\t"
			 "kmovw %%k7, 12(%[kout])\n\t"
			 "vzeroupper\n\t"
			 : [n] "+r"(spins)
			 : [in] "r"(in), [out] "r"(out), [kin] "r"(kin), [kout] "r"(kout)
			 : "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24",
			   "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "k1", "k2", "k3",
			   "k4", "k5", "k6", "k7", "memory", "cc");
}

/* st(0) = in[0] (the increment), st(1..7) = in[1..7]; st(1..7) += st(0), spins times. */
static void x87_spin(long double in[8], long double out[8], uint64_t spins)
{
	__asm__ volatile("fldt 7*16(%[in])\n\t"
			 "fldt 6*16(%[in])\n\t"
			 "fldt 5*16(%[in])\n\t"
			 "fldt 4*16(%[in])\n\t"
			 "fldt 3*16(%[in])\n\t"
			 "fldt 2*16(%[in])\n\t"
			 "fldt 1*16(%[in])\n\t"
			 "fldt 0*16(%[in])\n\t"
			 "1:\n\t"
			 "fadd %%st(0), %%st(1)\n\t"
			 "fadd %%st(0), %%st(2)\n\t"
			 "fadd %%st(0), %%st(3)\n\t"
			 "fadd %%st(0), %%st(4)\n\t"
			 "fadd %%st(0), %%st(5)\n\t"
			 "fadd %%st(0), %%st(6)\n\t"
			 "fadd %%st(0), %%st(7)\n\t"
			 "dec %[n]\n\t"
			 "jnz 1b\n\t"
			 "fstpt 0*16(%[out])\n\t"
			 "fstpt 1*16(%[out])\n\t"
			 "fstpt 2*16(%[out])\n\t"
			 "fstpt 3*16(%[out])\n\t"
			 "fstpt 4*16(%[out])\n\t"
			 "fstpt 5*16(%[out])\n\t"
			 "fstpt 6*16(%[out])\n\t"
			 "fstpt 7*16(%[out])\n\t"
			 : [n] "+r"(spins)
			 : [in] "r"(in), [out] "r"(out)
			 : "st", "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)", "memory",
			   "cc");
}

static uint64_t dbits(double d)
{
	uint64_t u;
	memcpy(&u, &d, 8);
	return u;
}
static double bitsd(uint64_t u)
{
	double d;
	memcpy(&d, &u, 8);
	return d;
}

#define YMM_SPINS (1ULL << 20)
#define X87_SPINS (1ULL << 18)
#define ZMM_SPINS (1ULL << 19)

/* One round; returns 0 if a check failed (already recorded). corrupt: damage the results first. */
static int round_(uint64_t iter, int corrupt_ymm, int corrupt_x87, int corrupt_zmm)
{
	int ok = 1;
	if (have_avx) {
		uint64_t in[16][4], out[16][4];
		for (int k = 0; k < 16; k++)
			for (int l = 0; l < 4; l++) {
				uint64_t r = e2e_mix(iter * 1024 + (uint64_t)k * 4 + l);
				if (k < 7)
					in[k][l] = r;
				else if (k < 14)
					in[k][l] = dbits((double)(r >> 14));
				else if (k == 14)
					in[k][l] = dbits((double)(1 + (r & 0xff)));
				else
					in[k][l] = 1 + (r & 0xff);
			}
		ymm_spin(in, out, YMM_SPINS);
		if (corrupt_ymm)
			out[3][1] ^= 1;
		for (int k = 0; k < 16 && ok; k++)
			for (int l = 0; l < 4 && ok; l++) {
				uint64_t want;
				if (k < 7)
					want = in[k][l] + YMM_SPINS * in[15][l];
				else if (k < 14)
					want = dbits(bitsd(in[k][l]) + (double)YMM_SPINS * bitsd(in[14][l]));
				else
					want = in[k][l];
				ok = E2E_CHECK(out[k][l] == want,
					       "round %" PRIu64 ": ymm%d lane %d is %#" PRIx64 ", want %#" PRIx64,
					       iter, k, l, out[k][l], want);
			}
	}
	{
		long double in[8], out[8];
		for (int k = 0; k < 8; k++) {
			uint64_t r = e2e_mix(iter * 1024 + 512 + (uint64_t)k);
			in[k] = k == 0 ? (long double)(1 + (r & 0xff)) : (long double)(r >> 4);
		}
		x87_spin(in, out, X87_SPINS);
		if (corrupt_x87)
			out[5] += 1;
		for (int k = 0; k < 8 && ok; k++) {
			long double want = k == 0 ? in[0] : in[k] + (long double)X87_SPINS * in[0];
			ok = E2E_CHECK(out[k] == want, "round %" PRIu64 ": x87 st(%d) is %.0Lf, want %.0Lf",
				       iter, k, out[k], want);
		}
	}
	if (have_avx512) {
		static uint64_t in[16][8], out[16][8];
		uint16_t kin[7], kout[7];
		for (int k = 0; k < 16; k++)
			for (int l = 0; l < 8; l++) {
				uint64_t r = e2e_mix(iter * 1024 + 256 + (uint64_t)k * 8 + l);
				in[k][l] = k == 15 ? 1 + (r & 0xff) : r;
			}
		for (int k = 0; k < 7; k++)
			kin[k] = (uint16_t)e2e_mix(iter * 1024 + 768 + (uint64_t)k);
		zmm_spin(in, out, kin, kout, ZMM_SPINS);
		if (corrupt_zmm)
			kout[2] ^= 4;
		for (int k = 0; k < 16 && ok; k++)
			for (int l = 0; l < 8 && ok; l++) {
				uint64_t want = k < 15 ? in[k][l] + ZMM_SPINS * in[15][l] : in[k][l];
				ok = E2E_CHECK(out[k][l] == want, "round %" PRIu64 ": zmm%d lane %d wrong",
					       iter, k + 16, l);
			}
		for (int k = 0; k < 7 && ok; k++)
			ok = E2E_CHECK(kout[k] == kin[k], "round %" PRIu64 ": k%d is %#x, want %#x", iter,
				       k + 1, kout[k], kin[k]);
	}
	unsigned short cw;
	unsigned mxcsr;
	__asm__ volatile("fnstcw %0" : "=m"(cw));
	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
	volatile double one = 1.0, ten = 10.0;
	double tenth = one / ten;
	ok = ok && E2E_CHECK(cw == X87_CW, "round %" PRIu64 ": x87 control word %#x, want %#x", iter,
			     cw, X87_CW);
	ok = ok && E2E_CHECK((mxcsr & ~0x3fu) == MXCSR_RZ,
			     "round %" PRIu64 ": MXCSR %#x, want %#x (exception flags ignored)", iter,
			     mxcsr, MXCSR_RZ);
	ok = ok && E2E_CHECK(dbits(tenth) == TENTH_RZ,
			     "round %" PRIu64 ": 1.0/10.0 = %#" PRIx64 ", want %#llx (round toward zero)",
			     iter, dbits(tenth), TENTH_RZ);
	return ok;
}

int main(int argc, char **argv)
{
	e2e_init(argc, argv, "");
	detect();
	if (!have_avx)
		printf("fpu: the CPU (or kernel) lacks AVX: checking x87 and SSE only\n");
	printf("fpu: AVX %s, AVX-512 %s\n", have_avx ? "yes" : "no", have_avx512 ? "yes" : "no");
	unsigned short cw = X87_CW;
	unsigned mxcsr = MXCSR_RZ;
	__asm__ volatile("fldcw %0" ::"m"(cw));
	__asm__ volatile("ldmxcsr %0" ::"m"(mxcsr));

	uint64_t iter = 0;
	int64_t t0 = e2e_mono_ns();
	for (;;) {
		if (!round_(iter, 0, 0, 0))
			e2e_finish();
		iter++;
		if (iter == 3) {
			printf("fpu: a round takes %" PRId64 " us\n", (e2e_mono_ns() - t0) / 3000);
			e2e_ready();
		}
		if (iter > 3 && e2e_go())
			break;
	}
	printf("fpu: go after %" PRIu64 " rounds\n", iter);
	int bad_cw = e2e_corrupt("x87cw"), bad_mxcsr = e2e_corrupt("mxcsr");
	if (bad_cw) {
		unsigned short def = 0x037F;
		__asm__ volatile("fldcw %0" ::"m"(def));
	}
	if (bad_mxcsr) {
		unsigned def = 0x1F80;
		__asm__ volatile("ldmxcsr %0" ::"m"(def));
	}
	round_(iter, e2e_corrupt("ymm"), e2e_corrupt("x87"), e2e_corrupt("zmm"));
	e2e_finish();
}
