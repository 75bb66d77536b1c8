/* SPDX-License-Identifier: MIT */
#include "kernel/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernel/kvm_ioctl.h"
#include "kernel/util/log.h"
#include "kernel/vm_priv.h"

/*
 * The kick signal. Its handler only sets immediate_exit in the current
 * thread's kvm_run, so that a KVM_RUN about to start returns at once and
 * one in progress returns with -EINTR. All waiting happens in thread
 * context on vm->cond.
 */
#define VCPU_KICK_SIGNAL (SIGRTMIN + 1)

static __thread struct kvm_run *this_run;
static __thread struct vcpu *this_vcpu;

struct vcpu *vcpu_self(void)
{
	return this_vcpu;
}

int vcpu_kick_signal(void)
{
	return VCPU_KICK_SIGNAL;
}

void vcpu_set_kick_hook(struct vcpu *vcpu, vcpu_kick_fn_t fn, void *opaque)
{
	vcpu->kick_fn = fn;
	vcpu->kick_opaque = opaque;
}

static void kick_handler(int sig __unused)
{
	struct kvm_run *run = this_run;

	if (run)
		__atomic_store_n(&run->immediate_exit, 1, __ATOMIC_SEQ_CST);
}

static pthread_once_t signal_once = PTHREAD_ONCE_INIT;
static int signal_err;

static void signal_setup(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: KVM_RUN must come back with -EINTR. */
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
		signal_err = -errno;
}

int vcpu_signal_init(void)
{
	pthread_once(&signal_once, signal_setup);
	return signal_err;
}

int vcpu_create(struct vm *vm, unsigned int id, struct vcpu **out)
{
	struct vcpu *vcpu;
	int ret, size;

	vcpu = calloc(1, sizeof(*vcpu));
	if (!vcpu)
		return -ENOMEM;
	vcpu->vm = vm;
	vcpu->id = id;
	pthread_mutex_init(&vcpu->ring_lock, NULL);

	ret = kvm_ioctl_val(vm->vm_fd, KVM_CREATE_VCPU, id);
	if (ret < 0) {
		pr_err("KVM_CREATE_VCPU %u: %s", id, strerror(-ret));
		goto err_free;
	}
	vcpu->fd = ret;
	size = kvm_ioctl_val(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (size < (int)sizeof(struct kvm_run)) {
		ret = size < 0 ? size : -EINVAL;
		goto err_close;
	}
	vcpu->run_size = (size_t)size;
	vcpu->run = mmap(NULL, vcpu->run_size, PROT_READ | PROT_WRITE,
			 MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		ret = -errno;
		goto err_close;
	}
	if (vm->cfg.dirty == DIRTY_MODE_RING) {
		vcpu->ring_entries = vm->cfg.dirty_ring_size;
		vcpu->ring = mmap(
			NULL, vcpu->ring_entries * sizeof(struct kvm_dirty_gfn),
			PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd,
			(off_t)KVM_DIRTY_LOG_PAGE_OFFSET * PAGE_SIZE);
		if (vcpu->ring == MAP_FAILED) {
			ret = -errno;
			pr_err("mapping vCPU %u dirty ring: %s", id,
			       strerror(-ret));
			vcpu->ring = NULL;
			goto err_unmap;
		}
	}
	ret = vcpu_arch_init(vcpu);
	if (ret < 0)
		goto err_ring;
	*out = vcpu;
	return 0;

err_ring:
	if (vcpu->ring)
		munmap(vcpu->ring,
		       vcpu->ring_entries * sizeof(struct kvm_dirty_gfn));
err_unmap:
	munmap(vcpu->run, vcpu->run_size);
err_close:
	close(vcpu->fd);
err_free:
	pthread_mutex_destroy(&vcpu->ring_lock);
	free(vcpu);
	return ret;
}

void vcpu_destroy(struct vcpu *vcpu)
{
	dirty_vcpu_free(vcpu);
	if (vcpu->ring)
		munmap(vcpu->ring,
		       vcpu->ring_entries * sizeof(struct kvm_dirty_gfn));
	munmap(vcpu->run, vcpu->run_size);
	close(vcpu->fd);
	pthread_mutex_destroy(&vcpu->ring_lock);
	free(vcpu);
}

void vcpu_kick(struct vcpu *vcpu)
{
	/* Setting it here too covers a vCPU that has not yet run. */
	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (vcpu->thread_started)
		pthread_kill(vcpu->thread, VCPU_KICK_SIGNAL);
}

/*
 * One KVM_RUN with immediate_exit set: KVM applies what is staged in
 * kvm_run and finishes a pending I/O or MMIO exit, then returns without
 * entering the guest. The flag is cleared after, as after any KVM_RUN: a
 * kick landing meanwhile is answered by the thread's loop, which looks
 * for a pause or a stop before it runs the guest again. Returns 0 or
 * -errno (not -EINTR, which is the expected answer).
 */
static int run_at_once(struct vcpu *vcpu)
{
	int ret;

	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	ret = kvm_ioctl(vcpu->fd, KVM_RUN, NULL);
	__atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	vcpu->io_pending = false;
	return ret < 0 && ret != -EINTR ? ret : 0;
}

/*
 * KVM finishes an I/O or MMIO exit (stores IN data, advances RIP) only on
 * the next KVM_RUN. Before the vCPU parks (or an exit handler reads or
 * loads its state, vcpu_complete_io()), one run_at_once() makes its
 * registers final.
 */
static int complete_pending_io(struct vcpu *vcpu)
{
	int ret;

	if (!vcpu->io_pending)
		return 0;
	ret = run_at_once(vcpu);
	if (ret < 0)
		pr_warn("vCPU %u: completing I/O: %s", vcpu->id,
			strerror(-ret));
	return ret;
}

int vcpu_complete_io(struct vcpu *vcpu)
{
	return vcpu == this_vcpu ? complete_pending_io(vcpu) : -EPERM;
}

bool vcpu_known_runnable(const struct vcpu *vcpu)
{
	return vcpu == this_vcpu && vcpu->exited_in_io;
}

int vcpu_apply_staged(struct vcpu *vcpu)
{
	int ret;

	/* An exit a reset left pending (x86_vcpu_reload_settle()) is finished. */
	if (vcpu == this_vcpu && vcpu->io_pending) {
		ret = complete_pending_io(vcpu);
		if (ret < 0)
			return ret;
	}
	if (!__atomic_load_n(&vcpu->run->kvm_dirty_regs, __ATOMIC_ACQUIRE))
		return 0;
	/* KVM applies them before it looks at immediate_exit. */
	ret = run_at_once(vcpu);
	if (ret < 0) {
		pr_err("vCPU %u: applying the staged registers: %s", vcpu->id,
		       strerror(-ret));
		vcpu->run->kvm_dirty_regs = 0;
		return ret;
	}
	return vcpu->run->kvm_dirty_regs ? -EIO : 0;
}

/*
 * Parks the calling vCPU thread while a pause is in force. Returns false
 * if the VM is stopping and the thread should exit.
 */
static bool vcpu_park(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	bool go_on;

	complete_pending_io(vcpu);
	pthread_mutex_lock(&vm->lock);
	if (vm->pause_depth && !vm->stopping) {
		vcpu->parked = true;
		vm->nr_parked++;
		pthread_cond_broadcast(&vm->cond);
		while (vm->pause_depth && !vm->stopping)
			pthread_cond_wait(&vm->cond, &vm->lock);
		vm->nr_parked--;
		vcpu->parked = false;
	}
	go_on = !vm->stopping;
	pthread_mutex_unlock(&vm->lock);
	return go_on;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	struct vm *vm = vcpu->vm;
	struct kvm_run *run = vcpu->run;
	uint64_t synced;
	sigset_t set;
	int ret;

	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	this_run = run;
	this_vcpu = vcpu;

	for (;;) {
		if (__atomic_load_n(&vm->yield, __ATOMIC_SEQ_CST)) {
			if (!vcpu_park(vcpu))
				break;
			continue;
		}
		synced = run->kvm_valid_regs;
		__atomic_store_n(&vcpu->running, true, __ATOMIC_SEQ_CST);
		ret = kvm_ioctl(vcpu->fd, KVM_RUN, NULL);
		__atomic_store_n(&vcpu->running, false, __ATOMIC_SEQ_CST);
		vcpu->exit_sets = ret ? 0 : synced;
		__atomic_add_fetch(&vcpu->run_seq, 1, __ATOMIC_SEQ_CST);
		__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		vcpu->io_pending = false;
		vcpu->exited_in_io =
			!ret && (run->exit_reason == KVM_EXIT_IO ||
				 run->exit_reason == KVM_EXIT_MMIO);
		__atomic_add_fetch(&vcpu->stats.exits, 1, __ATOMIC_RELAXED);
		if (ret < 0) {
			if (ret == -EINTR || ret == -EAGAIN) {
				__atomic_add_fetch(&vcpu->stats.intr_exits, 1,
						   __ATOMIC_RELAXED);
				ret = vcpu->kick_fn ?
					      vcpu->kick_fn(vcpu,
							    vcpu->kick_opaque) :
					      VCPU_CONTINUE;
				if (ret == VCPU_CONTINUE)
					continue;
				if (ret < 0) {
					vm_stop_detail(vm, VM_EXIT_ERROR,
						       "vCPU %u: kick hook: %s",
						       vcpu->id,
						       strerror(-ret));
					break;
				}
				if (!__atomic_load_n(&vm->stopping,
						     __ATOMIC_SEQ_CST))
					vm_stop(vm, VM_EXIT_REQUESTED);
				continue;
			}
			vm_stop_detail(
				vm, VM_EXIT_ERROR,
				"vCPU %u: KVM_RUN failed: %s%s", vcpu->id,
				strerror(-ret),
				run->kvm_dirty_regs ?
					" (refusing the staged registers)" :
					"");
			break;
		}
		ret = vcpu_handle_exit(vcpu);
		if (ret < 0) {
			vm_stop_detail(vm, VM_EXIT_ERROR,
				       "vCPU %u: exit %u handler failed: %s",
				       vcpu->id, run->exit_reason,
				       strerror(-ret));
			break;
		}
		if (ret == VCPU_STOP &&
		    !__atomic_load_n(&vm->stopping, __ATOMIC_SEQ_CST))
			vm_stop(vm, VM_EXIT_REQUESTED);
	}

	complete_pending_io(vcpu);
	this_run = NULL;
	this_vcpu = NULL;
	pthread_mutex_lock(&vm->lock);
	vm->nr_threads--;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

int vcpu_thread_start(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	char name[16];
	int ret;

	/* Counted before the thread exists, so a pause waits for it. */
	pthread_mutex_lock(&vm->lock);
	vm->nr_threads++;
	ret = -pthread_create(&vcpu->thread, NULL, vcpu_thread, vcpu);
	if (ret)
		vm->nr_threads--;
	else
		vcpu->thread_started = true;
	pthread_mutex_unlock(&vm->lock);
	if (!ret) {
		snprintf(name, sizeof(name), "vcpu%u", vcpu->id);
		pthread_setname_np(vcpu->thread, name);
	}
	return ret;
}

unsigned int vcpu_id(const struct vcpu *vcpu)
{
	return vcpu->id;
}

struct vm *vcpu_vm(const struct vcpu *vcpu)
{
	return vcpu->vm;
}

int vcpu_fd(const struct vcpu *vcpu)
{
	return vcpu->fd;
}

void vcpu_get_stats(const struct vcpu *vcpu, struct vcpu_stats *st)
{
	st->exits = __atomic_load_n(&vcpu->stats.exits, __ATOMIC_RELAXED);
	st->io_exits = __atomic_load_n(&vcpu->stats.io_exits, __ATOMIC_RELAXED);
	st->mmio_exits =
		__atomic_load_n(&vcpu->stats.mmio_exits, __ATOMIC_RELAXED);
	st->intr_exits =
		__atomic_load_n(&vcpu->stats.intr_exits, __ATOMIC_RELAXED);
	st->ring_full_exits =
		__atomic_load_n(&vcpu->stats.ring_full_exits, __ATOMIC_RELAXED);
}
