// bpf_throw where 6.18 forbids it: in a bpf_loop callback (a throw from a static function is fine).
#include "kern_types.h"
extern void bpf_throw(__u64 cookie) __ksym;
static int cb(__u32 idx, void *ctx)
{
	if (idx == 3)
		bpf_throw(9);
	return 0;
}
SEC("tc")
int throw_in_loop(struct __sk_buff *skb)
{
	bpf_loop(8, cb, 0, 0);
	return 1;
}
static __attribute__((noinline)) int stat(int x)
{
	if (x > 50)
		bpf_throw(3);
	return x;
}
SEC("tc")
int throw_in_static(struct __sk_buff *skb)
{
	return stat(skb->len);
}
char LICENSE[] SEC("license") = "GPL";
