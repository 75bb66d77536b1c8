/* SPDX-License-Identifier: MIT */
#include "kernel/netif.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/if_tun.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>

#include "kernel/util/log.h"

struct netif {
	char tap[IFNAMSIZ];
	char bridge[IFNAMSIZ];
	bool bridge_created;
};

int netif_tap_open(const char *name)
{
	struct ifreq ifr;
	int fd, ret;

	if (!name || !*name || strlen(name) >= IFNAMSIZ)
		return -EINVAL;
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		pr_err("tap %s: cannot open /dev/net/tun: %s", name,
		       strerror(-ret));
		return ret;
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		ret = -errno;
		pr_err("tap %s: TUNSETIFF: %s", name, strerror(-ret));
		close(fd);
		return ret;
	}
	return fd;
}

/* Runs one change on link @name: up, and/or master = @master_idx. */
static int link_change(struct nl_sock *sk, const char *name, bool up,
		       int master_idx)
{
	struct rtnl_link *link, *change;
	int ret;

	ret = rtnl_link_get_kernel(sk, 0, name, &link);
	if (ret < 0)
		return -ENODEV;
	change = rtnl_link_alloc();
	if (!change) {
		rtnl_link_put(link);
		return -ENOMEM;
	}
	if (up)
		rtnl_link_set_flags(change, IFF_UP);
	if (master_idx >= 0)
		rtnl_link_set_master(change, master_idx);
	ret = rtnl_link_change(sk, link, change, 0);
	rtnl_link_put(change);
	rtnl_link_put(link);
	return ret < 0 ? -EIO : 0;
}

int netif_attach(const char *tap, const char *bridge, struct netif **out)
{
	struct nl_sock *sk;
	struct netif *n;
	struct rtnl_link *br = NULL;
	int ret, br_idx;

	if (bridge && (!*bridge || strlen(bridge) >= IFNAMSIZ))
		return -EINVAL;
	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	snprintf(n->tap, sizeof(n->tap), "%s", tap);
	sk = nl_socket_alloc();
	if (!sk) {
		free(n);
		return -ENOMEM;
	}
	ret = nl_connect(sk, NETLINK_ROUTE);
	if (ret < 0) {
		ret = -EIO;
		pr_err("netlink: %s", nl_geterror(ret));
		goto out;
	}
	if (bridge) {
		snprintf(n->bridge, sizeof(n->bridge), "%s", bridge);
		if (rtnl_link_get_kernel(sk, 0, bridge, &br) < 0) {
			ret = rtnl_link_bridge_add(sk, bridge);
			if (ret < 0) {
				pr_err("creating bridge %s: %s", bridge,
				       nl_geterror(ret));
				ret = -EIO;
				goto out;
			}
			n->bridge_created = true;
			ret = link_change(sk, bridge, true, -1);
			if (ret < 0)
				goto out;
			if (rtnl_link_get_kernel(sk, 0, bridge, &br) < 0) {
				ret = -ENODEV;
				goto out;
			}
		}
		br_idx = rtnl_link_get_ifindex(br);
		rtnl_link_put(br);
		ret = link_change(sk, tap, true, br_idx);
	} else {
		ret = link_change(sk, tap, true, -1);
	}
	if (ret < 0)
		pr_err("bringing up tap %s%s%s: %s", tap,
		       bridge ? " on bridge " : "", bridge ? bridge : "",
		       strerror(-ret));
out:
	nl_socket_free(sk);
	if (ret < 0) {
		netif_release(n);
		return ret;
	}
	*out = n;
	return 0;
}

void netif_release(struct netif *n)
{
	struct nl_sock *sk;
	struct rtnl_link *link;

	if (!n)
		return;
	if (n->bridge_created) {
		sk = nl_socket_alloc();
		if (sk && nl_connect(sk, NETLINK_ROUTE) == 0 &&
		    rtnl_link_get_kernel(sk, 0, n->bridge, &link) == 0) {
			if (rtnl_link_delete(sk, link) < 0)
				pr_warn("could not delete bridge %s",
					n->bridge);
			rtnl_link_put(link);
		}
		if (sk)
			nl_socket_free(sk);
	}
	free(n);
}
