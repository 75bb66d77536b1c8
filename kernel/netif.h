/* SPDX-License-Identifier: MIT */
#ifndef VMM_KERNEL_NETIF_H
#define VMM_KERNEL_NETIF_H

/*
 * Host network plumbing through libnl: bringing a tap up, attaching it to
 * a bridge (created if absent), and removing at teardown what was
 * created. The tap itself is created by opening /dev/net/tun (see
 * netif_tap_open()); it disappears with its last fd unless it was
 * persistent before.
 */

#include <stdbool.h>

#include "kernel/util/compiler.h"

struct netif;

/*
 * Opens (creating if needed) tap @name with IFF_TAP | IFF_NO_PI |
 * IFF_VNET_HDR; returns the fd or -errno.
 */
int netif_tap_open(const char *name) __must_check;

/*
 * Brings @tap up and, if @bridge is non-NULL, attaches it to @bridge,
 * creating and raising the bridge if it does not exist. *@out remembers
 * what was created, for netif_release().
 */
int netif_attach(const char *tap, const char *bridge,
		 struct netif **out) __must_check;

/* Detaches the tap and deletes a bridge that netif_attach() created. */
void netif_release(struct netif *n);

#endif /* VMM_KERNEL_NETIF_H */
