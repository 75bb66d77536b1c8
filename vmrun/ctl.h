/* SPDX-License-Identifier: MIT */
#ifndef VMM_VMRUN_CTL_H
#define VMM_VMRUN_CTL_H

/*
 * The control socket of a running VM (vmrun run --ctl PATH): a Unix
 * stream socket served by the machine's event loop, speaking the framed
 * protobuf messages of proto/control.proto.
 */

#include <stddef.h>
#include <stdint.h>

struct machine;
struct ctl;

#define CTL_MAX_FRAME 65536

struct vmsnap_chain;

/* Binds @path (replacing a stale socket, never another file) and starts
 * serving it on @m's loop. @chain (may be NULL) names the image @m was
 * restored from: the base of its first incremental save. Returns 0 or
 * -errno with a reason in @err. */
int ctl_open(struct machine *m, const char *path, uint64_t mem_bytes,
	     const struct vmsnap_chain *chain, struct ctl **out, char *err,
	     size_t errlen);

/* Closes every connection and removes the socket file. */
void ctl_close(struct ctl *c);

int cmd_ctl(int argc, char **argv);

#endif /* VMM_VMRUN_CTL_H */
