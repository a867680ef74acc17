// A long dependent chain of 64-bit ALU operations on packet words.
#include "bench_common.h"

SEC("xdp")
int alu_chain(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	unsigned long long a = load64(data), b = load64(data + 8), c = load64(data + 16);
#pragma unroll
	for (int i = 0; i < 40; i++) {
		a += b ^ (c >> 7);
		b = (b << 13) | (b >> 51);
		c *= 0x9E3779B97F4A7C15ULL;
		a ^= c + i;
		b -= a >> 3;
	}
	return (a ^ b ^ c) & 3;
}

char LICENSE[] SEC("license") = "GPL";
