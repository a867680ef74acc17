/* Loops without bpf_loop: open-coded bpf_iter_num iterators (bpf_for / bpf_repeat).
 *
 * XDP program: sums the first `n` bytes of the packet (n = first byte, at most 32, copied
 * to the stack) with bpf_for, then adds 3 * bpf_repeat(3) and a triangle number computed by two nested
 * loops; returns the total (test_run retval).
 */
#include "common.h"
#include "bpf_iter.h"

#define MAX_BYTES 32

SEC("xdp")
int iter_sum(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	unsigned char buf[MAX_BYTES];
	int total = 0, i, j, n;

	if (data + MAX_BYTES > data_end)
		return 0;
	__builtin_memcpy(buf, data, MAX_BYTES);
	n = buf[0];
	if (n > MAX_BYTES)
		n = MAX_BYTES;

	bpf_for(i, 0, n) {
		if ((unsigned int)i >= MAX_BYTES)
			break;
		total += buf[i];
	}

	bpf_repeat(3)
		total += 3;

	bpf_for(i, 0, 4) {
		bpf_for(j, 0, i + 1)
			total += 1;
	}
	return total;
}

char LICENSE[] SEC("license") = "GPL";
