// Insertion sort of 16 packet bytes on the stack.
#include "bench_common.h"

SEC("xdp")
int sort16(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	unsigned char v[16] __attribute__((aligned(8)));
	*(unsigned long long *)v = load64(data + 32);
	*(unsigned long long *)(v + 8) = load64(data + 40);
	for (int i = 1; i < 16; i++) {
		unsigned char x = v[i];
		int j = i - 1;
		while (j >= 0 && v[j] > x) {
			v[j + 1] = v[j];
			j--;
		}
		v[j + 1] = x;
	}
	return (v[0] + v[15]) & 3;
}

char LICENSE[] SEC("license") = "GPL";
