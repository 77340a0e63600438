// Makes Debian's (not TSan-instrumented) Abseil synchronization visible to
// ThreadSanitizer. Compiled to nothing unless -fsanitize=thread.
//
// Problem: libabsl_synchronization.so was built without -fsanitize=thread, so
// absl::Mutex lock/unlock create no happens-before edges for TSan, and every
// ABSL_GUARDED_BY field touched from two threads is reported as a race (see
// engine/memory/mutex_tsan_probe_test.cc). Suppressions cannot fix this
// soundly: the reported stacks are the user's code, not Abseil's.
//
// Fix: interpose the exported entry points (the test binary's definitions win
// over the shared library's; Abseil's own internal calls go through the PLT,
// so they are caught too), forward to the real function found with
// dlsym(RTLD_NEXT), and wrap each call in the same __tsan_mutex_* annotations
// Abseil itself emits when it is built with TSan. Between pre_lock and
// post_lock TSan ignores memory accesses, which covers Condition callbacks run
// inside LockWhen/Await.
//
// Not covered: Notification::HasBeenNotified()'s inline fast path only sees
// the edge published by Notify() below through the atomic's address, which
// relies on the (checked) Notification layout.
#if defined(__SANITIZE_THREAD__)

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

void* Real(const char* symbol) {
  void* fn = dlsym(RTLD_NEXT, symbol);
  if (fn == nullptr) {
    std::fprintf(stderr, "absl_tsan_shim: dlsym(RTLD_NEXT, %s) failed\n",
                 symbol);
    std::abort();
  }
  return fn;
}

template <typename Fn>
Fn RealFn(const char* symbol) {
  return reinterpret_cast<Fn>(Real(symbol));
}

constexpr unsigned kRead = __tsan_mutex_read_lock;

}  // namespace

#define COLO_SYM(name) __asm__(name)

extern "C" {

// ---------------------------------------------------------------- Mutex
void ShimLock(absl::Mutex* mu) COLO_SYM("_ZN4absl7debian35Mutex4LockEv");
void ShimLock(absl::Mutex* mu) {
  static auto real = RealFn<void (*)(absl::Mutex*)>("_ZN4absl7debian35Mutex4LockEv");
  __tsan_mutex_pre_lock(mu, 0);
  real(mu);
  __tsan_mutex_post_lock(mu, 0, 0);
}

void ShimReaderLock(absl::Mutex* mu)
    COLO_SYM("_ZN4absl7debian35Mutex10ReaderLockEv");
void ShimReaderLock(absl::Mutex* mu) {
  static auto real =
      RealFn<void (*)(absl::Mutex*)>("_ZN4absl7debian35Mutex10ReaderLockEv");
  __tsan_mutex_pre_lock(mu, kRead);
  real(mu);
  __tsan_mutex_post_lock(mu, kRead, 0);
}

void ShimUnlock(absl::Mutex* mu) COLO_SYM("_ZN4absl7debian35Mutex6UnlockEv");
void ShimUnlock(absl::Mutex* mu) {
  static auto real =
      RealFn<void (*)(absl::Mutex*)>("_ZN4absl7debian35Mutex6UnlockEv");
  __tsan_mutex_pre_unlock(mu, 0);
  real(mu);
  __tsan_mutex_post_unlock(mu, 0);
}

void ShimReaderUnlock(absl::Mutex* mu)
    COLO_SYM("_ZN4absl7debian35Mutex12ReaderUnlockEv");
void ShimReaderUnlock(absl::Mutex* mu) {
  static auto real =
      RealFn<void (*)(absl::Mutex*)>("_ZN4absl7debian35Mutex12ReaderUnlockEv");
  __tsan_mutex_pre_unlock(mu, kRead);
  real(mu);
  __tsan_mutex_post_unlock(mu, kRead);
}

bool ShimTryLock(absl::Mutex* mu) COLO_SYM("_ZN4absl7debian35Mutex7TryLockEv");
bool ShimTryLock(absl::Mutex* mu) {
  static auto real =
      RealFn<bool (*)(absl::Mutex*)>("_ZN4absl7debian35Mutex7TryLockEv");
  __tsan_mutex_pre_lock(mu, __tsan_mutex_try_lock);
  const bool ok = real(mu);
  __tsan_mutex_post_lock(
      mu, __tsan_mutex_try_lock | (ok ? 0 : __tsan_mutex_try_lock_failed), 0);
  return ok;
}

bool ShimReaderTryLock(absl::Mutex* mu)
    COLO_SYM("_ZN4absl7debian35Mutex13ReaderTryLockEv");
bool ShimReaderTryLock(absl::Mutex* mu) {
  static auto real =
      RealFn<bool (*)(absl::Mutex*)>("_ZN4absl7debian35Mutex13ReaderTryLockEv");
  __tsan_mutex_pre_lock(mu, __tsan_mutex_try_read_lock);
  const bool ok = real(mu);
  __tsan_mutex_post_lock(
      mu, ok ? __tsan_mutex_try_read_lock : __tsan_mutex_try_read_lock_failed,
      0);
  return ok;
}

#define COLO_LOCK_WHEN(shim, symbol, flags)                                  \
  void shim(absl::Mutex* mu, const absl::Condition& c) COLO_SYM(symbol);     \
  void shim(absl::Mutex* mu, const absl::Condition& c) {                     \
    static auto real =                                                       \
        RealFn<void (*)(absl::Mutex*, const absl::Condition&)>(symbol);      \
    __tsan_mutex_pre_lock(mu, flags);                                        \
    real(mu, c);                                                             \
    __tsan_mutex_post_lock(mu, flags, 0);                                    \
  }
COLO_LOCK_WHEN(ShimLockWhen,
               "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE", 0)
COLO_LOCK_WHEN(ShimReaderLockWhen,
               "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE",
               kRead)
#undef COLO_LOCK_WHEN

#define COLO_LOCK_WHEN_T(shim, symbol, flags, T)                             \
  bool shim(absl::Mutex* mu, const absl::Condition& c, T t) COLO_SYM(symbol); \
  bool shim(absl::Mutex* mu, const absl::Condition& c, T t) {                \
    static auto real =                                                       \
        RealFn<bool (*)(absl::Mutex*, const absl::Condition&, T)>(symbol);   \
    __tsan_mutex_pre_lock(mu, flags);                                        \
    const bool r = real(mu, c, t);                                           \
    __tsan_mutex_post_lock(mu, flags, 0);                                    \
    return r;                                                                \
  }
COLO_LOCK_WHEN_T(
    ShimLockWhenWithDeadline,
    "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE",
    0, absl::Time)
COLO_LOCK_WHEN_T(ShimReaderLockWhenWithDeadline,
                 "_ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_"
                 "9ConditionENS0_4TimeE",
                 kRead, absl::Time)
#undef COLO_LOCK_WHEN_T

// Await releases and re-acquires the (writer-held) mutex internally.
void ShimAwait(absl::Mutex* mu, const absl::Condition& c)
    COLO_SYM("_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
void ShimAwait(absl::Mutex* mu, const absl::Condition& c) {
  static auto real = RealFn<void (*)(absl::Mutex*, const absl::Condition&)>(
      "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  __tsan_mutex_pre_unlock(mu, 0);
  __tsan_mutex_post_unlock(mu, 0);
  __tsan_mutex_pre_lock(mu, 0);
  real(mu, c);
  __tsan_mutex_post_lock(mu, 0, 0);
}

#define COLO_AWAIT_T(shim, symbol, T)                                        \
  bool shim(absl::Mutex* mu, const absl::Condition& c, T t) COLO_SYM(symbol); \
  bool shim(absl::Mutex* mu, const absl::Condition& c, T t) {                \
    static auto real =                                                       \
        RealFn<bool (*)(absl::Mutex*, const absl::Condition&, T)>(symbol);   \
    __tsan_mutex_pre_unlock(mu, 0);                                          \
    __tsan_mutex_post_unlock(mu, 0);                                         \
    __tsan_mutex_pre_lock(mu, 0);                                            \
    const bool r = real(mu, c, t);                                           \
    __tsan_mutex_post_lock(mu, 0, 0);                                        \
    return r;                                                                \
  }
COLO_AWAIT_T(
    ShimAwaitWithDeadline,
    "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE",
    absl::Time)
#undef COLO_AWAIT_T

#define COLO_MUTEX_DTOR(shim, symbol)                                        \
  void shim(absl::Mutex* mu) COLO_SYM(symbol);                               \
  void shim(absl::Mutex* mu) {                                               \
    static auto real = RealFn<void (*)(absl::Mutex*)>(symbol);               \
    __tsan_mutex_destroy(mu, 0);                                             \
    real(mu);                                                                \
  }
COLO_MUTEX_DTOR(ShimMutexD1, "_ZN4absl7debian35MutexD1Ev")
COLO_MUTEX_DTOR(ShimMutexD2, "_ZN4absl7debian35MutexD2Ev")
#undef COLO_MUTEX_DTOR

// -------------------------------------------------------------- CondVar
// Wait releases the (writer-held) mutex and re-acquires it before returning.
void ShimCondVarWait(absl::CondVar* cv, absl::Mutex* mu)
    COLO_SYM("_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
void ShimCondVarWait(absl::CondVar* cv, absl::Mutex* mu) {
  static auto real = RealFn<void (*)(absl::CondVar*, absl::Mutex*)>(
      "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  __tsan_mutex_pre_unlock(mu, 0);
  __tsan_mutex_post_unlock(mu, 0);
  __tsan_mutex_pre_lock(mu, 0);
  real(cv, mu);
  __tsan_mutex_post_lock(mu, 0, 0);
}

#define COLO_CV_WAIT_T(shim, symbol, T)                                      \
  bool shim(absl::CondVar* cv, absl::Mutex* mu, T t) COLO_SYM(symbol);       \
  bool shim(absl::CondVar* cv, absl::Mutex* mu, T t) {                       \
    static auto real =                                                       \
        RealFn<bool (*)(absl::CondVar*, absl::Mutex*, T)>(symbol);           \
    __tsan_mutex_pre_unlock(mu, 0);                                          \
    __tsan_mutex_post_unlock(mu, 0);                                         \
    __tsan_mutex_pre_lock(mu, 0);                                            \
    const bool r = real(cv, mu, t);                                          \
    __tsan_mutex_post_lock(mu, 0, 0);                                        \
    return r;                                                                \
  }
COLO_CV_WAIT_T(ShimCondVarWaitWithDeadline,
               "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_"
               "4TimeE",
               absl::Time)
#undef COLO_CV_WAIT_T

// The *WithTimeout variants: Abseil implements them by calling the
// *WithDeadline variant through the PLT, which the shims above intercept, so
// annotating both would unlock the mutex twice for TSan. They forward to the
// deadline shims instead (the same deadline Abseil computes).
bool ShimLockWhenWithTimeout(absl::Mutex* mu, const absl::Condition& c, absl::Duration t)
    COLO_SYM("_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
bool ShimLockWhenWithTimeout(absl::Mutex* mu, const absl::Condition& c, absl::Duration t) {
  return ShimLockWhenWithDeadline(mu, c, absl::Now() + t);
}
bool ShimReaderLockWhenWithTimeout(absl::Mutex* mu, const absl::Condition& c, absl::Duration t)
    COLO_SYM("_ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
bool ShimReaderLockWhenWithTimeout(absl::Mutex* mu, const absl::Condition& c, absl::Duration t) {
  return ShimReaderLockWhenWithDeadline(mu, c, absl::Now() + t);
}
bool ShimAwaitWithTimeout(absl::Mutex* mu, const absl::Condition& c, absl::Duration t)
    COLO_SYM("_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
bool ShimAwaitWithTimeout(absl::Mutex* mu, const absl::Condition& c, absl::Duration t) {
  return ShimAwaitWithDeadline(mu, c, absl::Now() + t);
}
bool ShimCondVarWaitWithTimeout(absl::CondVar* cv, absl::Mutex* mu, absl::Duration t)
    COLO_SYM("_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
bool ShimCondVarWaitWithTimeout(absl::CondVar* cv, absl::Mutex* mu, absl::Duration t) {
  return ShimCondVarWaitWithDeadline(cv, mu, absl::Now() + t);
}

// --------------------------------------------------------- Notification
// Publish a release on the atomic flag's address, which the inline
// HasBeenNotified() fast path acquires with an (instrumented) atomic load.
static_assert(sizeof(absl::Notification) == 2 * sizeof(absl::Mutex),
              "absl::Notification layout changed: {Mutex, atomic<bool>}");
void ShimNotify(absl::Notification* n)
    COLO_SYM("_ZN4absl7debian312Notification6NotifyEv");
void ShimNotify(absl::Notification* n) {
  static auto real = RealFn<void (*)(absl::Notification*)>(
      "_ZN4absl7debian312Notification6NotifyEv");
  __tsan_release(reinterpret_cast<char*>(n) + sizeof(absl::Mutex));
  __tsan_release(n);
  real(n);
}

void ShimWaitForNotification(const absl::Notification* n)
    COLO_SYM("_ZNK4absl7debian312Notification19WaitForNotificationEv");
void ShimWaitForNotification(const absl::Notification* n) {
  static auto real = RealFn<void (*)(const absl::Notification*)>(
      "_ZNK4absl7debian312Notification19WaitForNotificationEv");
  real(n);
  __tsan_acquire(const_cast<absl::Notification*>(n));
}

#define COLO_WAIT_NOTIFICATION_T(shim, symbol, T)                            \
  bool shim(const absl::Notification* n, T t) COLO_SYM(symbol);              \
  bool shim(const absl::Notification* n, T t) {                              \
    static auto real =                                                       \
        RealFn<bool (*)(const absl::Notification*, T)>(symbol);              \
    const bool r = real(n, t);                                               \
    if (r) __tsan_acquire(const_cast<absl::Notification*>(n));               \
    return r;                                                                \
  }
COLO_WAIT_NOTIFICATION_T(ShimWaitForNotificationWithTimeout,
                         "_ZNK4absl7debian312Notification30"
                         "WaitForNotificationWithTimeoutENS0_8DurationE",
                         absl::Duration)
COLO_WAIT_NOTIFICATION_T(ShimWaitForNotificationWithDeadline,
                         "_ZNK4absl7debian312Notification31"
                         "WaitForNotificationWithDeadlineENS0_4TimeE",
                         absl::Time)
#undef COLO_WAIT_NOTIFICATION_T

}  // extern "C"

#endif  // defined(__SANITIZE_THREAD__)
