// 32-bit ALU: mixing with shifts, rotates, multiplies and divides.
#include "bench_common.h"

SEC("xdp")
int alu32_chain(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	unsigned int a = *(unsigned int *)data, b = *(unsigned int *)(data + 4);
	unsigned int d = (*(unsigned int *)(data + 8) | 1);
#pragma unroll
	for (int i = 0; i < 32; i++) {
		a = (a << 5 | a >> 27) + b;
		b ^= a * 2654435761u;
		a += b / d;
		b = b % (d + i) + a;
	}
	return (a ^ b) & 3;
}

char LICENSE[] SEC("license") = "GPL";
