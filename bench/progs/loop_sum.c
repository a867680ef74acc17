// A bounded loop summing packet bytes.
#include "bench_common.h"

SEC("xdp")
int loop_sum(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	unsigned long long sum = 0;
	for (int i = 0; i < PKT_LEN; i++)
		sum += data[i] * (i + 1);
	return sum & 3;
}

char LICENSE[] SEC("license") = "GPL";
