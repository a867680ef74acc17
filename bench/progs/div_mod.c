// 64-bit divisions and remainders by packet-derived divisors.
#include "bench_common.h"

SEC("xdp")
int div_mod(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	unsigned long long acc = load64(data) | 1;
	for (int i = 0; i < 32; i++) {
		unsigned long long d = data[i] + 3;
		acc = acc / d + acc % (d + 7) + 0x123456789ULL;
	}
	return acc & 3;
}

char LICENSE[] SEC("license") = "GPL";
