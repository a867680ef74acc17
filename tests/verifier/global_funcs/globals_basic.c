// Global (non-static) functions: verified once on their own, from their BTF prototype.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define __arg_ctx __attribute__((btf_decl_tag("arg:ctx")))
#define __arg_nonnull __attribute__((btf_decl_tag("arg:nonnull")))
#define __arg_nullable __attribute__((btf_decl_tag("arg:nullable")))

struct pair { int a; int b; };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, int);
	__type(value, struct pair);
} pairs SEC(".maps");

__attribute__((noinline)) int add_one(int x) { return x + 1; }
__attribute__((noinline)) int read_len(struct __sk_buff *skb) { return skb->len; }

/* a pointer argument is memory of the pointee's size that may be NULL */
__attribute__((noinline)) int sum_pair(struct pair *p)
{
	if (!p)
		return 0;
	return p->a + p->b;
}

/* ... unless it is tagged non-NULL */
__attribute__((noinline)) int sum_pair_nn(struct pair *p __arg_nonnull)
{
	return p->a + p->b;
}

/* a global calling a global: verified in a second round */
__attribute__((noinline)) int twice(int x) { return add_one(x) + add_one(x + 1); }

/* never called from verified code: never verified */
__attribute__((noinline)) int unused_global(int x) { return x * 3; }

/* a static function beside them is walked in its caller as always */
static __attribute__((noinline)) int stat_sub(int x) { return x - 1; }

SEC("tc")
int main_prog(struct __sk_buff *skb)
{
	return add_one(skb->mark) + read_len(skb);
}

SEC("tc")
int pair_prog(struct __sk_buff *skb)
{
	int key = skb->mark & 3;
	struct pair *p = bpf_map_lookup_elem(&pairs, &key);
	struct pair local = { 1, 2 };

	return sum_pair(p) + sum_pair(&local) + sum_pair_nn(&local) + twice(key) + stat_sub(key);
}

/* NULL into a non-NULL argument: the caller is refused */
SEC("tc")
int bad_nonnull(struct __sk_buff *skb)
{
	int key = 0;
	struct pair *p = bpf_map_lookup_elem(&pairs, &key);

	return sum_pair_nn(p);
}

/* reading past the pointee in the global function itself is refused there */
__attribute__((noinline)) int overread(struct pair *p __arg_nonnull)
{
	return p->a + *((int *)p + 2);
}

SEC("tc")
int bad_overread(struct __sk_buff *skb)
{
	struct pair local = { 1, 2 };

	return overread(&local);
}

/* a context argument that is not the context */
__attribute__((noinline)) int ctx_len(void *ctx __arg_ctx)
{
	return ((struct __sk_buff *)ctx)->len;
}

SEC("tc")
int ctx_prog(struct __sk_buff *skb)
{
	return ctx_len(skb);
}

SEC("tc")
int bad_ctx_arg(struct __sk_buff *skb)
{
	struct pair local = { 1, 2 };

	return ctx_len(&local);
}

/* a tracepoint's `void *ctx` is no context type: its main prototype is unreliable */
SEC("tracepoint/syscalls/sys_enter_getpid")
int tp_prog(void *ctx)
{
	return add_one(1) & 0;
}

char LICENSE[] SEC("license") = "GPL";
