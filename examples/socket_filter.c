// SPDX-License-Identifier: GPL-2.0
/* Socket filter: keeps only TCP packets to a port (truncated to 96 bytes), drops the rest,
 * and counts what it saw. Reads the packet with bpf_skb_load_bytes and the legacy
 * LD_ABS instructions, as tcpdump-style filters do. */
#include "common.h"
#include <stddef.h>

unsigned long long load_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");
unsigned long long load_half(void *skb, unsigned long long off) asm("llvm.bpf.load.half");

const volatile __u16 port = 80;
__u64 seen = 0;
__u64 kept = 0;

SEC("socket")
int tcp_port_filter(struct __sk_buff *skb)
{
	struct tcphdr tcp;
	__u32 ihl;

	__sync_fetch_and_add(&seen, 1);
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	if (load_byte(skb, ETH_HLEN + offsetof(struct iphdr, protocol)) != IPPROTO_TCP)
		return 0;
	if (load_half(skb, ETH_HLEN + offsetof(struct iphdr, frag_off)) & 0x1fff)
		return 0;
	ihl = (load_byte(skb, ETH_HLEN) & 0xf) * 4;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + ihl, &tcp, sizeof(tcp)) < 0)
		return 0;
	if (tcp.dest != bpf_htons(port))
		return 0;
	__sync_fetch_and_add(&kept, 1);
	return 96;
}

char _license[] SEC("license") = "GPL";
