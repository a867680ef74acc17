# fib(40) computed in a bpf-to-bpf subprogram (bpf_conformance syntax).
# expect: 102334155
mov %r1, 40
call local fib
exit
fib:
mov %r0, 0
mov %r2, 1
jeq %r1, 0, done
step:
mov %r3, %r0
add %r3, %r2
mov %r0, %r2
mov %r2, %r3
sub %r1, 1
jne %r1, 0, step
done:
exit
