# IPv4 header checksum over the memory in r1 (r2 bytes), bpf_conformance syntax.
# mem: 45 00 00 73 00 00 40 00 40 11 00 00 c0 a8 00 01 c0 a8 00 c7
# expect: 0xb861
mov %r0, 0
mov %r3, 0
loop:
ldxh %r4, [%r1]
be16 %r4
add %r0, %r4
add %r1, 2
add %r3, 2
jlt %r3, %r2, loop
mov %r4, %r0
rsh %r4, 16
and %r0, 0xffff
add %r0, %r4
mov %r4, %r0
rsh %r4, 16
and %r0, 0xffff
add %r0, %r4
xor %r0, 0xffff
exit
