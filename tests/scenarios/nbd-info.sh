# nbd-info: a guest with two file disks (xvda 40 MiB read-write, xvdb 24 MiB read-only), 32 MiB
# and every service. Each disk connects (`xenrs blk:` line: size = the file's, ro= as the spec,
# backend=0) and is exported (`xenrs nbd: export`); from dom0, `nbdinfo --json` of each export
# shows the file's size and read-only flag, and on the read-write disk flush and trim as its
# features= list says (flush or barrier -> can_flush; can_trim exactly with discard); `nbdinfo --list`
# names both exports with their sizes. No guest error line.
# xt-timeout: 300
# Helpers blk_*: tests/scenarios/lib/blk.sh.
G=xt-nbd-info
IP=169.254.77.42
xt_disk xvda 40 || xt_fail "xt_disk xvda failed"
da=$XT_DISK
xt_disk xvdb 24 ro || xt_fail "xt_disk xvdb failed"
db=$XT_DISK
blk_start "$G" "$IP" "disk=$da" "disk=$db" || xt_fail "$BLK_WHY"
problems=""
seen=""
for v in xvda xvdb; do
	blk_uri "$IP" "$v"
	if ! blk_nbdinfo "$BLK_URI"; then
		problems+="$BLK_WHY; "
		continue
	fi
	read -r size ro flush fua trim zero mc <<<"$BLK_INFO"
	want_size=$(stat -c %s "${BLK_FILE[$v]}")
	want_ro=false
	[ "${BLK_RO[$v]}" = 1 ] && want_ro=true
	[ "$size" = "$want_size" ] || problems+="$v: nbdinfo export-size $size, the file has $want_size; "
	[ "$ro" = "$want_ro" ] || problems+="$v: nbdinfo is_read_only $ro, expected $want_ro; "
	feats=$(blk_features "$v")
	if [ "${BLK_RO[$v]}" = 0 ]; then
		# A back end with a write cache (flush or barrier) needs NBD flushes; without one the
		# server may still accept them (answered once earlier writes completed).
		if [[ ,$feats, =~ ,(flush|barrier), ]] && [ "$flush" != true ]; then
			problems+="$v: nbdinfo can_flush $flush, though the disk's features=$feats; "
		fi
		want=false
		[[ ,$feats, == *,discard,* ]] && want=true
		[ "$trim" = "$want" ] || problems+="$v: nbdinfo can_trim $trim, the disk's features=$feats; "
	fi
	seen+="$v: size=$size ro=$ro flush=$flush fua=$fua trim=$trim zero=$zero multi_conn=$mc (features=$feats); "
done
if js=$(timeout 60 nbdinfo --list --json "nbd://$IP:$BLK_NBD_PORT" 2>"$XT_RUN/nbdinfo.err"); then
	list=$(jq -r '[.exports[] | "\(."export-name")=\(."export-size")"] | sort | join(" ")' <<<"$js" 2>&1)
	want_list="xvda=$(stat -c %s "${BLK_FILE[xvda]}") xvdb=$(stat -c %s "${BLK_FILE[xvdb]}")"
	[ "$list" = "$want_list" ] || problems+="nbdinfo --list: '$list', expected '$want_list'; "
else
	problems+="nbdinfo --list failed: $(tr '\n' ' ' <"$XT_RUN/nbdinfo.err" | cut -c1-200); "
fi
blk_verdict "$G" "$problems" "${seen}nbdinfo --list: $list; guest: ${BLK_LINE[xvda]#xenrs } | ${BLK_LINE[xvdb]#xenrs }"
