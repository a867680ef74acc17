// bpf_throw where 6.18 forbids it: in a bpf_loop callback, in the exception callback itself,
// in a static function called inside an RCU section (a throw from a static function is fine).
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
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;
SEC("tc")
int throw_in_rcu_static(struct __sk_buff *skb)
{
	int r;

	bpf_rcu_read_lock();
	r = stat(skb->len);
	bpf_rcu_read_unlock();
	return r;
}
__attribute__((noinline)) int throwing_cb(__u64 cookie)
{
	if (cookie)
		bpf_throw(1);
	return 0;
}
SEC("tc")
__attribute__((btf_decl_tag("exception_callback:throwing_cb")))
int throw_from_exc_cb(struct __sk_buff *skb)
{
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
