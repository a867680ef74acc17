// 512 iterations of xorshift64* seeded from the packet: a loop-carried dependency.
#include "bench_common.h"

SEC("xdp")
int xorshift_loop(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	unsigned long long x = load64(data) | 1;
	for (int i = 0; i < 512; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
	}
	return (x * 0x2545F4914F6CDD1DULL) >> 62;
}

char LICENSE[] SEC("license") = "GPL";
