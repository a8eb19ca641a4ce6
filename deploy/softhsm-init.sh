#!/bin/sh
# Initialises a SoftHSM2 token in a directory of its own (a named volume in
# docker-compose.yml), once: later runs find it and do nothing.
#
#   $SOFTHSM_ENV_DIR/softhsm2.conf   the configuration (SOFTHSM2_CONF)
#   $SOFTHSM_ENV_DIR/tokens/         the token
#   $SOFTHSM_ENV_DIR/user.pin        the user PIN (mode 0600)
#   $SOFTHSM_ENV_DIR/so.pin          the security officer PIN (mode 0600)
#
# The PINs come from the environment (TWOWAY_SOFTHSM_USER_PIN,
# TWOWAY_SOFTHSM_SO_PIN, e.g. passed through from an env file) or are
# generated; they are written to the PIN files and never printed.
# softhsm2-util takes PINs only as arguments, so they are briefly visible
# to root in the process list of this one-shot container: a development
# token only. (testenv/softhsm and 'twoway-hsm env up' initialise tokens
# through PKCS#11 instead, without that exposure.)
set -eu
umask 077

dir=${SOFTHSM_ENV_DIR:-/var/lib/softhsm-env}
label=${SOFTHSM_TOKEN_LABEL:-twoway}
conf=$dir/softhsm2.conf
# Debian's softhsm2 module. The image has no p11-kit proxy module, so the
# references printed below name it (module-path=).
module=/usr/lib/softhsm/libsofthsm2.so

if [ -f "$conf" ] &&
	SOFTHSM2_CONF=$conf softhsm2-util --show-slots 2>/dev/null | grep -q "Label: *$label *\$"; then
	if [ -f "$dir/user.pin" ]; then
		echo "softhsm-init: token \"$label\" already initialised in $dir"
		exit 0
	fi
	# A second token with the same label would make token=$label ambiguous.
	echo "softhsm-init: token \"$label\" exists in $dir but its user.pin is gone; start again with an empty volume (docker-compose down -v)" >&2
	exit 1
fi

mkdir -p "$dir/tokens"
# The same settings as testenv/softhsm's NewEnv writes.
cat >"$conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
slots.mechanisms = ALL
library.reset_on_fork = false
CONF

randpin() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }
user_pin=${TWOWAY_SOFTHSM_USER_PIN:-$(randpin)}
so_pin=${TWOWAY_SOFTHSM_SO_PIN:-$(randpin)}
printf '%s\n' "$user_pin" >"$dir/user.pin"
printf '%s\n' "$so_pin" >"$dir/so.pin"

SOFTHSM2_CONF=$conf softhsm2-util --init-token --free --label "$label" \
	--so-pin "$so_pin" --pin "$user_pin" >/dev/null
unset user_pin so_pin

echo "softhsm-init: token \"$label\" initialised in $dir"
echo "  SOFTHSM2_CONF=$conf"
echo "  pkcs11:token=$label?module-path=$module&pin-source=file:$dir/user.pin"
