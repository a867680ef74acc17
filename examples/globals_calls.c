// SPDX-License-Identifier: GPL-2.0
/* Global variables (.data, .rodata, .bss, a custom .data.* section) and bpf-to-bpf calls:
 * a static subprogram, a global (BTF-verified) subprogram and a subprogram shared by two
 * programs. Userspace sets the .rodata constants before load and reads the counters. */
#include "common.h"

const volatile __u32 max_len = 1500;      /* .rodata: configured before load */
const volatile __u8 verbose = 0;
__u64 pkt_count = 0;                      /* .bss */
__u64 long_count = 0;
__u32 last_len = 0;
__u64 magic = 0xfeedf00dcafe;             /* .data */
__u32 hist[8] SEC(".data.hist") = {};     /* custom .data.* section: a map of its own */

static __noinline __u32 bucket(__u32 len)
{
	__u32 b = 0;

	if (len > 64)
		b++;
	if (len > 128)
		b++;
	if (len > 256)
		b++;
	if (len > 512)
		b++;
	if (len > 1024)
		b++;
	return b;
}

__noinline int account(__u32 len)
{
	__u32 b = bucket(len);

	if (b < 8)
		hist[b]++;
	last_len = len;
	return len > max_len;
}

static __noinline int common_tail(int too_long)
{
	pkt_count++;
	if (too_long)
		long_count++;
	if (verbose)
		bpf_printk("len %u long %d", last_len, too_long);
	return too_long;
}

SEC("xdp")
int xdp_globals(struct xdp_md *ctx)
{
	__u32 len = ctx->data_end - ctx->data;

	return common_tail(account(len)) ? XDP_DROP : XDP_PASS;
}

SEC("socket")
int sock_globals(struct __sk_buff *skb)
{
	return common_tail(account(skb->len)) ? 0 : skb->len;
}

char _license[] SEC("license") = "GPL";
