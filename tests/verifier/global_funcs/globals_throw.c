// BPF exceptions: bpf_throw from any depth, the default callback (the cookie is the
// return value) and an exception callback named by a decl tag; the refusals.
#include "kern_types.h"

extern void bpf_throw(__u64 cookie) __ksym;

#define __exception_cb(name) __attribute__((btf_decl_tag("exception_callback:" #name)))

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

__attribute__((noinline)) int check_len(int x)
{
	if (x > 100)
		bpf_throw(7);
	return x + 1;
}

/* the default callback: a throw returns its cookie */
SEC("tc")
int throw_default(struct __sk_buff *skb)
{
	return check_len(skb->len);
}

__attribute__((noinline)) int on_throw(__u64 cookie)
{
	return cookie + 40;
}

/* a callback of its own: a throw returns what it makes of the cookie */
SEC("tc")
__exception_cb(on_throw)
int throw_with_cb(struct __sk_buff *skb)
{
	if (skb->len > 10)
		bpf_throw(2);
	return 0;
}

/* a throw must not leave a reference behind */
SEC("tc")
int throw_leaks(struct __sk_buff *skb)
{
	long *slot = bpf_ringbuf_reserve(&events, sizeof(*slot), 0);

	if (!slot)
		return 0;
	if (skb->len > 10)
		bpf_throw(1);
	bpf_ringbuf_discard(slot, 0);
	return 0;
}

/* with the default callback the cookie must be a valid return value (cgroup skb: 0/1) */
SEC("cgroup_skb/ingress")
int throw_bad_cookie(struct __sk_buff *skb)
{
	if (skb->len > 10)
		bpf_throw(7);
	return 1;
}

__attribute__((noinline)) int two_args(__u64 cookie, __u64 other)
{
	return cookie + other;
}

/* an exception callback takes exactly one integer */
SEC("tc")
__exception_cb(two_args)
int throw_bad_cb(struct __sk_buff *skb)
{
	if (skb->len > 10)
		bpf_throw(2);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
