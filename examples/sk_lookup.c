// SPDX-License-Identifier: GPL-2.0
/* sk_lookup steering policy: refuses connections to closed ports, lets the rest through,
 * and keeps per-protocol counters plus the last lookup it saw (as the kernel's test_run
 * and pybpf's both fill it in from ctx_in). A deployment would also bpf_sk_assign() a
 * socket from a SOCKMAP; here the NULL assignment exercises the helper's rules. */
#include "common.h"

#define SK_DROP 0
#define SK_PASS 1

struct lookup_seen {
	__u32 family;
	__u32 protocol;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6_last;
	__u32 local_ip6_first;
	__u32 remote_port; /* network order, widened */
	__u32 local_port;  /* host order */
	__u32 ingress_ifindex;
	__s32 assign_err;
	__u8 remote_port_hi; /* narrow reads */
	__u8 family_lo;
	__u16 local_ip4_hi;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} per_proto SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lookup_seen);
} last SEC(".maps");

/* ports nobody may connect to; set from user space */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u8);
} closed_ports SEC(".maps");

SEC("sk_lookup")
int steer(struct bpf_sk_lookup *ctx)
{
	__u32 zero = 0, proto = ctx->protocol & 0xff;
	__u16 port = ctx->local_port;
	struct lookup_seen *seen;
	__u64 *cnt;

	cnt = bpf_map_lookup_elem(&per_proto, &proto);
	if (cnt)
		__sync_fetch_and_add(cnt, 1);

	seen = bpf_map_lookup_elem(&last, &zero);
	if (seen) {
		seen->family = ctx->family;
		seen->protocol = ctx->protocol;
		seen->remote_ip4 = ctx->remote_ip4;
		seen->local_ip4 = ctx->local_ip4;
		seen->remote_ip6_last = ctx->remote_ip6[3];
		seen->local_ip6_first = ctx->local_ip6[0];
		seen->remote_port = ctx->remote_port;
		seen->local_port = ctx->local_port;
		seen->ingress_ifindex = ctx->ingress_ifindex;
		seen->remote_port_hi = *((__u8 *)&ctx->remote_port + 1);
		seen->family_lo = *(__u8 *)&ctx->family;
		seen->local_ip4_hi = *((__u16 *)&ctx->local_ip4 + 1);
		seen->assign_err = bpf_sk_assign(ctx, ctx->sk, port == 9 ? 4 : 0);
	}
	if (bpf_map_lookup_elem(&closed_ports, &port))
		return SK_DROP;
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
