//go:build linux && !duckdb_use_lib && !duckdb_use_static_lib

package query

/*
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// jemalloc 5's extent hooks (include/jemalloc/jemalloc_typedefs.h.in),
// as the copy linked into DuckDB's prebuilt library (symbols prefixed
// duckdb_je_) defines them. weir_install checks the version first.
typedef struct extent_hooks_s extent_hooks_t;
typedef void *(extent_alloc_t)(extent_hooks_t *, void *, size_t, size_t, bool *, bool *, unsigned);
typedef bool (extent_dalloc_t)(extent_hooks_t *, void *, size_t, bool, unsigned);
typedef void (extent_destroy_t)(extent_hooks_t *, void *, size_t, bool, unsigned);
typedef bool (extent_commit_t)(extent_hooks_t *, void *, size_t, size_t, size_t, unsigned);
typedef bool (extent_decommit_t)(extent_hooks_t *, void *, size_t, size_t, size_t, unsigned);
typedef bool (extent_purge_t)(extent_hooks_t *, void *, size_t, size_t, size_t, unsigned);
typedef bool (extent_split_t)(extent_hooks_t *, void *, size_t, size_t, size_t, bool, unsigned);
typedef bool (extent_merge_t)(extent_hooks_t *, void *, size_t, void *, size_t, bool, unsigned);
struct extent_hooks_s {
	extent_alloc_t *alloc;
	extent_dalloc_t *dalloc;
	extent_destroy_t *destroy;
	extent_commit_t *commit;
	extent_decommit_t *decommit;
	extent_purge_t *purge_lazy;
	extent_purge_t *purge_forced;
	extent_split_t *split;
	extent_merge_t *merge;
};

extern int duckdb_je_mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);
extern void *duckdb_je_malloc(size_t size);
extern void duckdb_je_free(void *ptr);

// WEIR_GROW_STEP bounds the steps in which an arena takes address space.
#define WEIR_GROW_STEP (16u << 20)

// weir_probe holds the allocation that made the arena of large
// allocations.
static void *weir_probe;

// The hooks jemalloc had (its defaults) and the ones that wrap them.
static extent_hooks_t *weir_orig;
static extent_hooks_t weir_hooks;
// weir_committed is the memory of the extents jemalloc holds committed;
// weir_limit caps it (0: no cap); weir_refused counts refusals.
static int64_t weir_committed, weir_limit, weir_refused;
// weir_peak is the most weir_committed has been.
static int64_t weir_peak;

// weir_take counts n more bytes committed, or refuses them past the
// limit and returns false.
static bool weir_take(size_t n) {
	int64_t limit = __atomic_load_n(&weir_limit, __ATOMIC_RELAXED);
	int64_t now = __atomic_add_fetch(&weir_committed, (int64_t)n, __ATOMIC_RELAXED);
	if (limit > 0 && now > limit) {
		__atomic_sub_fetch(&weir_committed, (int64_t)n, __ATOMIC_RELAXED);
		__atomic_add_fetch(&weir_refused, 1, __ATOMIC_RELAXED);
		return false;
	}
	int64_t peak = __atomic_load_n(&weir_peak, __ATOMIC_RELAXED);
	while (now > peak && !__atomic_compare_exchange_n(&weir_peak, &peak, now, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
	}
	return true;
}

static void weir_give(size_t n) { __atomic_sub_fetch(&weir_committed, (int64_t)n, __ATOMIC_RELAXED); }

// weir_map maps size bytes at new_addr, or anywhere when it is NULL,
// aligned to alignment (a power of two). jemalloc's own default does
// the same (its "dss" alternative, the program break, aside), but it
// looks up the thread's jemalloc state, and from inside a hook, on a
// thread that has so far only freed, that allocates while jemalloc
// holds its locks: so the hooks do not call it.
static void *weir_map(void *new_addr, size_t size, size_t alignment) {
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	if (alignment < page) {
		alignment = page;
	}
	void *p = mmap(new_addr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		return NULL;
	}
	if (new_addr != NULL && p != new_addr) {
		munmap(p, size);
		return NULL;
	}
	if (((uintptr_t)p & (alignment - 1)) == 0) {
		return p;
	}
	munmap(p, size);
	if (new_addr != NULL) {
		return NULL;
	}
	size_t big = size + alignment - page;
	if (big < size) {
		return NULL;
	}
	p = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		return NULL;
	}
	uintptr_t start = ((uintptr_t)p + alignment - 1) & ~(uintptr_t)(alignment - 1);
	size_t lead = start - (uintptr_t)p, trail = big - lead - size;
	if (lead > 0) {
		munmap(p, lead);
	}
	if (trail > 0) {
		munmap((void *)(start + size), trail);
	}
	return (void *)start;
}

// An extent comes from the operating system committed and zeroed.
static void *weir_alloc(extent_hooks_t *h, void *new_addr, size_t size, size_t alignment, bool *zero, bool *commit, unsigned ind) {
	if (!weir_take(size)) {
		return NULL;
	}
	void *p = weir_map(new_addr, size, alignment);
	if (p == NULL) {
		weir_give(size);
		return NULL;
	}
	*zero = true;
	*commit = true;
	return p;
}

// Two extents may become one where both were mapped (so not below the
// program break, where jemalloc's "dss" extents are); jemalloc's own
// check, like its allocation, looks up the thread's state.
static bool weir_merge(extent_hooks_t *h, void *addr_a, size_t size_a, void *addr_b, size_t size_b, bool committed, unsigned ind) {
	void *brk = sbrk(0);
	return (uintptr_t)addr_a < (uintptr_t)brk || (uintptr_t)addr_b < (uintptr_t)brk;
}

static bool weir_dalloc(extent_hooks_t *h, void *addr, size_t size, bool committed, unsigned ind) {
	bool kept = weir_orig->dalloc(weir_orig, addr, size, committed, ind);
	if (!kept && committed) {
		weir_give(size);
	}
	return kept;
}

static void weir_destroy(extent_hooks_t *h, void *addr, size_t size, bool committed, unsigned ind) {
	weir_orig->destroy(weir_orig, addr, size, committed, ind);
	if (committed) {
		weir_give(size);
	}
}

// jemalloc's own commit and decommit do nothing where the system
// overcommits, so the extents it keeps for reuse (retained) would stay
// committed, and reused without a call to any hook. These decommit for
// real (the pages go back and the range stays reserved), so that
// retained extents count for nothing and reusing one commits it here,
// within the limit. Both return false on success.
static bool weir_commit(extent_hooks_t *h, void *addr, size_t size, size_t offset, size_t length, unsigned ind) {
	if (!weir_take(length)) {
		return true;
	}
	void *at = (char *)addr + offset;
	if (mmap(at, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != at) {
		weir_give(length);
		return true;
	}
	return false;
}

static bool weir_decommit(extent_hooks_t *h, void *addr, size_t size, size_t offset, size_t length, unsigned ind) {
	void *at = (char *)addr + offset;
	if (mmap(at, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) != at) {
		return true;
	}
	weir_give(length);
	return false;
}

static size_t weir_size_stat(const char *name) {
	size_t v = 0, sz = sizeof(v);
	if (duckdb_je_mallctl(name, &v, &sz, NULL, 0) != 0) {
		return 0;
	}
	return v;
}

// weir_install wraps the extent hooks of every arena. It returns 0, or
// an error number and a message in err.
static int weir_install(char *err, size_t errlen) {
	const char *version = NULL;
	size_t sz = sizeof(version);
	int rc = duckdb_je_mallctl("version", &version, &sz, NULL, 0);
	if (rc != 0 || version == NULL || strncmp(version, "5.", 2) != 0) {
		snprintf(err, errlen, "jemalloc version %s is not 5.x", version ? version : "unknown");
		return rc ? rc : EINVAL;
	}
	// Allocations past oversize_threshold go to an arena of their own,
	// made at the first of them; make it now so that it gets the hooks,
	// with an allocation that is held for good. Freed before the hooks,
	// it would stay with that arena committed, for large allocations to
	// reuse uncounted; freed after, it would be decommitted uncounted.
	// Held, it costs address space only: its pages are never written.
	size_t huge = weir_size_stat("opt.oversize_threshold");
	if (huge > 0 && weir_probe == NULL) {
		weir_probe = duckdb_je_malloc(huge);
		if (weir_probe == NULL) {
			snprintf(err, errlen, "cannot reserve %zu bytes of address space to make the arena of large allocations", huge);
			return ENOMEM;
		}
	}
	extent_hooks_t *orig = NULL;
	sz = sizeof(orig);
	if ((rc = duckdb_je_mallctl("arena.0.extent_hooks", &orig, &sz, NULL, 0)) != 0 || orig == NULL || orig->alloc == NULL) {
		snprintf(err, errlen, "reading arena 0's extent hooks failed");
		return rc ? rc : EINVAL;
	}
	unsigned n = 0;
	sz = sizeof(n);
	if ((rc = duckdb_je_mallctl("arenas.narenas", &n, &sz, NULL, 0)) != 0) {
		snprintf(err, errlen, "reading arenas.narenas failed");
		return rc;
	}
	weir_orig = orig;
	weir_hooks = *orig;
	weir_hooks.alloc = weir_alloc;
	weir_hooks.dalloc = orig->dalloc ? weir_dalloc : NULL;
	weir_hooks.destroy = orig->destroy ? weir_destroy : NULL;
	weir_hooks.commit = weir_commit;
	weir_hooks.merge = orig->merge ? weir_merge : NULL;
	weir_hooks.decommit = weir_decommit;
	// Count what jemalloc holds already, all committed: its extents
	// and the ones it retains, but not the arena of large allocations,
	// which holds the reservation above and retains the rest of the
	// address space taken for it (less than one step of its size
	// classes; it may serve a large allocation uncounted).
	uint64_t epoch = 1;
	sz = sizeof(epoch);
	duckdb_je_mallctl("epoch", &epoch, &sz, &epoch, sz);
	int64_t held = (int64_t)(weir_size_stat("stats.mapped") + weir_size_stat("stats.retained"));
	unsigned autos = 0;
	sz = sizeof(autos);
	if (weir_probe != NULL && duckdb_je_mallctl("opt.narenas", &autos, &sz, NULL, 0) == 0 && n == autos + 1) {
		char name[64];
		snprintf(name, sizeof(name), "stats.arenas.%u.mapped", autos);
		held -= (int64_t)weir_size_stat(name);
		snprintf(name, sizeof(name), "stats.arenas.%u.retained", autos);
		held -= (int64_t)weir_size_stat(name);
	}
	__atomic_store_n(&weir_committed, held, __ATOMIC_RELAXED);
	__atomic_store_n(&weir_peak, held, __ATOMIC_RELAXED);

	extent_hooks_t *mine = &weir_hooks;
	for (unsigned i = 0; i < n; i++) {
		char name[64];
		snprintf(name, sizeof(name), "arena.%u.extent_hooks", i);
		extent_hooks_t *old = NULL;
		size_t oldsz = sizeof(old);
		rc = duckdb_je_mallctl(name, &old, &oldsz, &mine, sizeof(mine));
		if (rc == EFAULT) {
			continue; // an index past the automatic arenas that was never made
		}
		if (rc != 0 || (old != orig && old != mine)) {
			if (rc == 0) {
				duckdb_je_mallctl(name, NULL, NULL, &old, sizeof(old));
				snprintf(err, errlen, "arena %u has extent hooks of its own", i);
				rc = EEXIST;
			} else {
				snprintf(err, errlen, "setting the extent hooks of arena %u failed", i);
			}
			// Give the arenas done so far their hooks back.
			for (unsigned j = 0; j < i; j++) {
				snprintf(name, sizeof(name), "arena.%u.extent_hooks", j);
				duckdb_je_mallctl(name, NULL, NULL, &orig, sizeof(orig));
			}
			return rc;
		}
		// An arena that retains address space takes it in steps that
		// grow geometrically, without bound by default; bound them so
		// that a small allocation never takes a large step past the
		// limit.
		size_t step = WEIR_GROW_STEP;
		snprintf(name, sizeof(name), "arena.%u.retain_grow_limit", i);
		duckdb_je_mallctl(name, NULL, NULL, &step, sizeof(step)); // fails only without retain
	}
	return 0;
}

// weir_purge gives back the free pages of every arena now, rather than
// when they decay. Never from a hook: it takes jemalloc's locks.
static void weir_purge(void) { duckdb_je_mallctl("arena.4096.purge", NULL, NULL, NULL, 0); } // 4096: MALLCTL_ARENAS_ALL

static void weir_set_limit(int64_t limit) { __atomic_store_n(&weir_limit, limit, __ATOMIC_RELAXED); }
static int64_t weir_get_committed(void) { return __atomic_load_n(&weir_committed, __ATOMIC_RELAXED); }
static int64_t weir_get_peak(void) { return __atomic_load_n(&weir_peak, __ATOMIC_RELAXED); }
static int64_t weir_get_limit(void) { return __atomic_load_n(&weir_limit, __ATOMIC_RELAXED); }
static int64_t weir_get_refused(void) { return __atomic_load_n(&weir_refused, __ATOMIC_RELAXED); }
*/
import "C"

import (
	"fmt"
	"sync"
	"sync/atomic"
)

var nativeMem struct {
	once      sync.Once
	err       error
	installed atomic.Bool
}

// installNativeHooks wraps jemalloc's extent hooks once per process.
func installNativeHooks() error {
	nativeMem.once.Do(func() {
		var buf [256]C.char
		if rc := C.weir_install(&buf[0], C.size_t(len(buf))); rc != 0 {
			nativeMem.err = fmt.Errorf("query: DuckDB's allocator cannot be limited: %s (errno %d)", C.GoString(&buf[0]), int(rc))
			return
		}
		nativeMem.installed.Store(true)
	})
	return nativeMem.err
}

// SetNativeMemoryLimit limits the memory DuckDB's allocator holds
// committed, every engine of the process together, to limit bytes (0:
// no limit), and returns the previous limit. Past it an allocation of
// DuckDB fails and the query that asked for it fails with ErrResources.
// What was committed before the call counts toward the limit. The first
// call installs the allocator's hooks; it returns an error, and changes
// nothing, where the build's DuckDB allocator cannot be hooked.
//
// Like runtime/debug.SetMemoryLimit it is a setting of the process, for
// its main program to make.
func SetNativeMemoryLimit(limit int64) (int64, error) {
	if limit < 0 {
		return 0, fmt.Errorf("query: negative native memory limit %d", limit)
	}
	if err := installNativeHooks(); err != nil {
		return 0, err
	}
	prev := int64(C.weir_get_limit())
	C.weir_set_limit(C.int64_t(limit))
	return prev, nil
}

// NativeMemory reports on DuckDB's allocator. Until SetNativeMemoryLimit
// has succeeded it reports it as not supported.
func NativeMemory() NativeMemoryStats {
	if !nativeMem.installed.Load() {
		return NativeMemoryStats{}
	}
	return NativeMemoryStats{
		Supported: true,
		Committed: int64(C.weir_get_committed()),
		Peak:      int64(C.weir_get_peak()),
		Limit:     int64(C.weir_get_limit()),
		Refused:   int64(C.weir_get_refused()),
	}
}

// relieveNativeMemory makes room under the limit before a query starts:
// the free pages DuckDB's allocator keeps for a while (jemalloc decays
// them in about a second) count toward it, so right after a query that
// was refused at the limit the next would be refused too. Past half the
// limit they are given back at once.
func relieveNativeMemory() {
	if !nativeMem.installed.Load() {
		return
	}
	if limit := int64(C.weir_get_limit()); limit > 0 && int64(C.weir_get_committed()) > limit/2 {
		C.weir_purge()
	}
}

// purgeNativeMemory gives back the pages DuckDB's allocator holds free,
// after work that freed much at once (compress): jemalloc decays them
// only as it allocates again, so an idle server would keep them.
func purgeNativeMemory() {
	if nativeMem.installed.Load() {
		C.weir_purge()
	}
}
