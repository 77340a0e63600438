// RETURN_IF_ERROR / ASSIGN_OR_RETURN: the one pair of status-propagation
// macros shared by every colo target.
#ifndef COLO_PROTO_STATUS_STATUS_MACROS_H_
#define COLO_PROTO_STATUS_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define COLO_STATUS_CONCAT_INNER_(a, b) a##b
#define COLO_STATUS_CONCAT_(a, b) COLO_STATUS_CONCAT_INNER_(a, b)

// Returns `expr`'s status from the enclosing function when it is not OK.
#define RETURN_IF_ERROR(expr)                                   \
  do {                                                          \
    const ::absl::Status colo_status_ = (expr);                 \
    if (ABSL_PREDICT_FALSE(!colo_status_.ok())) return colo_status_; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, StatusOrExpr())`: binds the value or returns
// the error from the enclosing function.
#define ASSIGN_OR_RETURN(lhs, rexpr)                                      \
  COLO_ASSIGN_OR_RETURN_IMPL_(COLO_STATUS_CONCAT_(colo_statusor_, __LINE__), \
                              lhs, rexpr)

#define COLO_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                \
  if (ABSL_PREDICT_FALSE(!statusor.ok())) {               \
    return std::move(statusor).status();                  \
  }                                                       \
  lhs = std::move(statusor).value()

#endif  // COLO_PROTO_STATUS_STATUS_MACROS_H_
