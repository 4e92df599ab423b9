#!/usr/bin/env bash
# Self-test of the harness's triple-fault policy (not part of ./run.sh test: one extra QEMU boot).
#
# Builds a tiny PVH guest that triple-faults on its first instructions (it loads an empty IDT
# and executes int3: #GP -> #DF -> triple fault), runs the `boot` scenario with it and checks
# that the harness (1) reports the first attempt as `RESULT boot FLAKE <state>` with Xen's
# dumped vCPU state, (2) retries exactly once, (3) turns the second triple fault into
# `RESULT boot FAIL triple fault again on the retry`, (4) counts `flakes: 1` and exits non-zero.
#
# Usage: tests/harness/selftest.sh        (needs binutils: as, ld)
set -euo pipefail
# shellcheck source=tests/harness/host-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/host-lib.sh"

xt_apt_install binutils
DIR="$XT_CACHE/selftest"
mkdir -p "$DIR"
cat >"$DIR/triple-fault.S" <<'EOF'
	/* PVH entry point note (xen/include/public/elfnote.h: XEN_ELFNOTE_PHYS32_ENTRY = 18). */
	.section .note.Xen, "a", @note
	.p2align 2
	.long 4, 4, 18
	.asciz "Xen"
	.long _start
	.text
	.code32
	.globl _start
_start:
	lidt idt_empty
	int3
1:	hlt
	jmp 1b
	.p2align 2
idt_empty:
	.word 0
	.long 0
EOF
printf 'ENTRY(_start)\nSECTIONS {\n . = 0x100000;\n .text : { *(.text) }\n .note.Xen : { *(.note.Xen) }\n}\n' >"$DIR/triple-fault.ld"
as --32 -o "$DIR/triple-fault.o" "$DIR/triple-fault.S"
ld -m elf_i386 -T "$DIR/triple-fault.ld" -o "$DIR/triple-fault.elf" "$DIR/triple-fault.o"

OUT="$DIR/run.out"
rc=0
"$XT_HARNESS/run-suite.sh" --kernel "$DIR/triple-fault.elf" --only boot >"$OUT" 2>&1 || rc=$?
summary=$(sed -n '/^==== real-Xen suite/,$p' "$OUT")
echo "$summary"
fails=()
[ "$rc" -ne 0 ] || fails+=("run-suite.sh exited 0")
[ "$(grep -c '^RESULT boot FLAKE .*Triple fault' <<<"$summary")" = 1 ] || fails+=("not exactly one 'RESULT boot FLAKE ... Triple fault ...' line")
grep -q '^RESULT boot FAIL triple fault again on the retry' <<<"$summary" || fails+=("no FAIL for the second triple fault")
grep -qx 'flakes: 1' <<<"$summary" || fails+=("no 'flakes: 1' line")
[ "$(grep -c 'xt: ==== scenario boot (attempt' "$OUT")" = 2 ] || fails+=("not exactly two attempts")
if [ ${#fails[@]} -eq 0 ]; then
	echo "selftest PASS: triple fault -> FLAKE, one retry, then FAIL"
else
	printf 'selftest FAIL: %s\n' "${fails[@]}"
	exit 1
fi
