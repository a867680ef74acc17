// Data-dependent branches on every packet byte.
#include "bench_common.h"

SEC("xdp")
int branchy(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	unsigned int score = 0;
	for (int i = 0; i < PKT_LEN; i++) {
		unsigned char c = data[i];
		if (c < 32)
			score += 1;
		else if (c < 64)
			score ^= c;
		else if (c & 1)
			score = score * 3 + 1;
		else if (c > 200)
			score >>= 1;
		else
			score += c;
	}
	return score & 3;
}

char LICENSE[] SEC("license") = "GPL";
