# Vigil guest: a small YAML-subset reader for "#cloud-config" user-data.
# Usage: awk -v out=DIR -f cloud-config.awk user-data
# Understood keys:
#   bootcmd, runcmd   list of commands: a string (one shell line, or a
#                     block scalar "|" for several) or a flow list
#                     [argv0, arg1, ...] which is shell-quoted word by word
#   write_files       list of {path, content, permissions, encoding
#                     (b64|base64|text), append, defer}; owner is ignored
#   hostname, fqdn    the guest's hostname
#   power_state       {mode: poweroff|reboot|halt} after runcmd
# Anything else is listed in DIR/ignored. Writes DIR/bootcmd.sh,
# DIR/runcmd.sh, DIR/files.list (index TAB path TAB perm TAB enc TAB append
# TAB defer), DIR/files/INDEX (content), DIR/hostname, DIR/power_state.

function indent_of(s) { match(s, /^ */); return RLENGTH }
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
function shq(s) { gsub(/'/, "'\"'\"'", s); return "'" s "'" }

# One scalar: "double", 'single' or plain (a " #" starts a comment).
function scalar(s,    c, i, r, n) {
	s = trim(s)
	c = substr(s, 1, 1)
	if (c == "\"") {
		r = ""; n = length(s)
		for (i = 2; i <= n; i++) {
			c = substr(s, i, 1)
			if (c == "\\") {
				i++; c = substr(s, i, 1)
				if (c == "n") r = r "\n"
				else if (c == "t") r = r "\t"
				else if (c == "r") r = r "\r"
				else if (c == "0") r = r ""
				else r = r c
			} else if (c == "\"") {
				break
			} else r = r c
		}
		return r
	}
	if (c == "'") {
		r = ""; n = length(s)
		for (i = 2; i <= n; i++) {
			c = substr(s, i, 1)
			if (c == "'") {
				if (substr(s, i + 1, 1) == "'") { r = r "'"; i++; continue }
				break
			}
			r = r c
		}
		return r
	}
	if (match(s, /[ \t]#/)) s = substr(s, 1, RSTART - 1)
	return trim(s)
}

# Splits a flow sequence "[a, 'b c', \"d\"]" into FLOW[1..n]; returns n.
function flow(s,    n, i, c, q, cur, depth, L) {
	s = trim(s)
	sub(/^\[/, "", s)
	if (match(s, /\][ \t]*(#.*)?$/)) s = substr(s, 1, RSTART - 1)
	n = 0; cur = ""; q = ""; L = length(s)
	for (i = 1; i <= L; i++) {
		c = substr(s, i, 1)
		if (q != "") {
			cur = cur c
			if (q == "\"" && c == "\\") { i++; cur = cur substr(s, i, 1); continue }
			if (c == q) {
				if (q == "'" && substr(s, i + 1, 1) == "'") { i++; cur = cur "'"; continue }
				q = ""
			}
			continue
		}
		if ((c == "\"" || c == "'") && trim(cur) == "") { q = c; cur = c; continue }
		if (c == ",") { FLOW[++n] = scalar(cur); cur = ""; continue }
		cur = cur c
	}
	if (trim(cur) != "") FLOW[++n] = scalar(cur)
	return n
}

function add_cmd(kind, cmd) {
	if (kind == "runcmd") RUN[++nrun] = cmd
	else BOOT[++nboot] = cmd
}

# A list item of bootcmd/runcmd (the text after "- ").
function cmd_item(kind, item, parent,    n, i, w) {
	item = trim(item)
	if (item ~ /^\[/) {
		n = flow(item); w = ""
		for (i = 1; i <= n; i++) w = w (i > 1 ? " " : "") shq(FLOW[i])
		add_cmd(kind, w)
	} else if (item ~ /^[|>][-+0-9]*([ \t]+#.*)?$/) {
		start_block(kind, item, parent)
	} else if (item != "") {
		add_cmd(kind, scalar(item))
	}
}

function start_block(target, header, parent) {
	inblock = 1; blk_target = target; blk_parent = parent; blk_ind = -1; blk_n = 0
	blk_style = substr(header, 1, 1)
	blk_chomp = "clip"
	if (header ~ /^.[0-9]*-/) blk_chomp = "strip"
	if (header ~ /^.[0-9]*\+/) blk_chomp = "keep"
}

function finish_block(    i, text, last, sep) {
	inblock = 0
	last = blk_n
	if (blk_chomp != "keep") while (last > 0 && blk_lines[last] == "") last--
	text = ""
	if (blk_style == "|") {
		for (i = 1; i <= last; i++) text = text blk_lines[i] (i < last ? "\n" : "")
	} else {
		sep = ""
		for (i = 1; i <= last; i++) {
			if (blk_lines[i] == "") { text = text "\n"; sep = "" }
			else { text = text sep blk_lines[i]; sep = " " }
		}
	}
	if (last > 0 && blk_chomp != "strip") text = text "\n"
	if (blk_chomp == "keep") for (i = last + 1; i <= blk_n; i++) text = text "\n"
	deliver(blk_target, text)
}

function deliver(target, text) {
	if (target == "runcmd" || target == "bootcmd") { sub(/\n$/, "", text); add_cmd(target, text) }
	else if (target ~ /^wf:/) { WF_CONTENT[substr(target, 4) + 0] = text; WF_HAS[substr(target, 4) + 0] = 1 }
}

# key: value of the current write_files entry; kcol is the key's column.
function wf_key(line, kcol,    key, val) {
	if (!match(line, /^[A-Za-z0-9_-]+:/)) return
	key = substr(line, 1, RLENGTH - 1)
	val = trim(substr(line, RLENGTH + 1))
	if (key == "content" && val ~ /^[|>][-+0-9]*([ \t]+#.*)?$/) { start_block("wf:" nfile, val, kcol); return }
	val = scalar(val)
	if (key == "path") WF_PATH[nfile] = val
	else if (key == "content") { WF_CONTENT[nfile] = val; WF_HAS[nfile] = 1 }
	else if (key == "permissions") WF_PERM[nfile] = val
	else if (key == "encoding") WF_ENC[nfile] = val
	else if (key == "append") WF_APPEND[nfile] = val
	else if (key == "defer") WF_DEFER[nfile] = val
}

BEGIN { top = ""; inblock = 0; nrun = 0; nboot = 0; nfile = 0; hostname = ""; pmode = ""; nign = 0 }

{
	sub(/\r$/, "")
	line = $0
	if (inblock) {
		if (line ~ /^[ \t]*$/) { blk_lines[++blk_n] = ""; next }
		ind = indent_of(line)
		if (ind > blk_parent) {
			if (blk_ind < 0) blk_ind = ind
			blk_lines[++blk_n] = (ind >= blk_ind) ? substr(line, blk_ind + 1) : trim(line)
			next
		}
		finish_block()
	}
	if (line ~ /^[ \t]*#/ || line ~ /^[ \t]*$/ || line ~ /^(---|\.\.\.)([ \t]|$)/) next
	ind = indent_of(line)
	body = substr(line, ind + 1)

	# A top-level key (list items may sit at column 0 under their key too).
	if (ind == 0 && body !~ /^-([ \t]|$)/) {
		if (!match(body, /^[A-Za-z0-9_-]+:/)) { IGN[++nign] = body; top = ""; next }
		top = substr(body, 1, RLENGTH - 1)
		rest = trim(substr(body, RLENGTH + 1))
		if (top == "runcmd" || top == "bootcmd") {
			if (rest ~ /^\[/) { n = flow(rest); for (i = 1; i <= n; i++) add_cmd(top, FLOW[i]) }
		} else if (top == "hostname" || top == "fqdn") {
			if (top == "hostname" || hostname == "") hostname = scalar(rest)
		} else if (top == "power_state") {
			if (match(rest, /mode[ \t]*:[ \t]*[A-Za-z]+/)) { pmode = substr(rest, RSTART, RLENGTH); sub(/^mode[ \t]*:[ \t]*/, "", pmode) }
		} else if (top != "write_files") {
			IGN[++nign] = top
		}
		next
	}

	if (top == "runcmd" || top == "bootcmd") {
		if (body ~ /^-([ \t]|$)/) cmd_item(top, substr(body, 2), ind)
		next
	}
	if (top == "write_files") {
		if (body ~ /^-([ \t]|$)/) {
			nfile++
			item = substr(body, 2)
			kcol = ind + 1 + indent_of(item)
			wf_key(trim(item), kcol)
		} else if (nfile > 0) {
			wf_key(body, ind)
		}
		next
	}
	if (top == "power_state") {
		if (match(body, /^mode[ \t]*:/)) pmode = scalar(substr(body, RLENGTH + 1))
		next
	}
}

END {
	if (inblock) finish_block()
	printf "" >(out "/bootcmd.sh")
	for (i = 1; i <= nboot; i++) print BOOT[i] >(out "/bootcmd.sh")
	printf "" >(out "/runcmd.sh")
	for (i = 1; i <= nrun; i++) print RUN[i] >(out "/runcmd.sh")
	printf "" >(out "/files.list")
	for (i = 1; i <= nfile; i++) {
		if (WF_PATH[i] == "") continue
		f = out "/files/" i
		printf "%s", WF_CONTENT[i] >f
		close(f)
		perm = WF_PERM[i]; if (perm == "") perm = "0644"
		enc = WF_ENC[i]; if (enc == "") enc = "text"
		app = (WF_APPEND[i] ~ /^([Tt]rue|yes|1)$/) ? "1" : "0"
		def = (WF_DEFER[i] ~ /^([Tt]rue|yes|1)$/) ? "1" : "0"
		printf "%d\t%s\t%s\t%s\t%s\t%s\n", i, WF_PATH[i], perm, enc, app, def >(out "/files.list")
	}
	if (hostname != "") print hostname >(out "/hostname")
	if (pmode != "") print pmode >(out "/power_state")
	printf "" >(out "/ignored")
	for (i = 1; i <= nign; i++) print IGN[i] >(out "/ignored")
}
