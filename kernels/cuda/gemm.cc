#include "kernels/cuda/gemm.h"

#include <limits>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/elementwise.h"

namespace colo::kernels::cuda {
namespace {

cudaDataType_t CudaType(DType d) {
  switch (d) {
    case DType::kFloat16:
      return CUDA_R_16F;
    case DType::kBFloat16:
      return CUDA_R_16BF;
    default:
      return CUDA_R_32F;
  }
}

// Largest power of two (<= 256) dividing the address.
uint32_t AlignmentOf(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align >>= 1;
  return align;
}

// A cached matmul: descriptors and the chosen algorithm.
struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr;
  cublasLtMatrixLayout_t b = nullptr;
  cublasLtMatrixLayout_t c = nullptr;
  cublasLtMatmulAlgo_t algo{};

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
  }
};

// m, n, k, in, out, alignments of w, x, y.
using PlanKey = std::tuple<int64_t, int64_t, int64_t, int, int, uint32_t, uint32_t, uint32_t>;

}  // namespace

struct Gemm::State {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  absl::flat_hash_map<PlanKey, std::unique_ptr<Plan>> plans;

  ~State() {
    plans.clear();
    if (handle != nullptr) cublasLtDestroy(handle);
  }

  absl::StatusOr<const Plan*> GetPlan(int64_t m, int64_t n, int64_t k, DType in, DType out,
                                      const void* w, const void* x, const void* y) {
    const PlanKey key{m,
                      n,
                      k,
                      static_cast<int>(in),
                      static_cast<int>(out),
                      AlignmentOf(w),
                      AlignmentOf(x),
                      AlignmentOf(y)};
    auto it = plans.find(key);
    if (it != plans.end()) return it->second.get();
    if (plans.size() >= kMaxPlans) plans.clear();
    auto plan = std::make_unique<Plan>();
    const std::string shape =
        absl::StrCat("(m=", m, ", n=", n, ", k=", k, ", ", DTypeName(in), " -> ", DTypeName(out),
                     ")");
    auto check = [&](cublasStatus_t st, const char* call) {
      return CublasStatus(st, absl::StrCat(call, shape).c_str());
    };
    if (absl::Status s = check(cublasLtMatmulDescCreate(&plan->op, CUBLAS_COMPUTE_32F,
                                                        CUDA_R_32F),
                               "cublasLtMatmulDescCreate");
        !s.ok()) {
      return s;
    }
    const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
    if (absl::Status s = check(cublasLtMatmulDescSetAttribute(plan->op,
                                                              CUBLASLT_MATMUL_DESC_TRANSA,
                                                              &trans_a, sizeof(trans_a)),
                               "cublasLtMatmulDescSetAttribute(TRANSA)");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = check(cublasLtMatmulDescSetAttribute(plan->op,
                                                              CUBLASLT_MATMUL_DESC_TRANSB,
                                                              &trans_b, sizeof(trans_b)),
                               "cublasLtMatmulDescSetAttribute(TRANSB)");
        !s.ok()) {
      return s;
    }
    // Column-major view: A = w (k x n, ld k, transposed), B = x (k x m, ld
    // k), C = D = y (n x m, ld n): D = A^T B is y^T, i.e. row-major y.
    if (absl::Status s = check(cublasLtMatrixLayoutCreate(&plan->a, CudaType(in), k, n, k),
                               "cublasLtMatrixLayoutCreate(w)");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = check(cublasLtMatrixLayoutCreate(&plan->b, CudaType(in), k, m, k),
                               "cublasLtMatrixLayoutCreate(x)");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = check(cublasLtMatrixLayoutCreate(&plan->c, CudaType(out), n, m, n),
                               "cublasLtMatrixLayoutCreate(y)");
        !s.ok()) {
      return s;
    }
    cublasLtMatmulPreference_t pref = nullptr;
    if (absl::Status s = check(cublasLtMatmulPreferenceCreate(&pref),
                               "cublasLtMatmulPreferenceCreate");
        !s.ok()) {
      return s;
    }
    const uint64_t ws = workspace_bytes;
    const uint32_t align_w = std::get<5>(key), align_x = std::get<6>(key),
                   align_y = std::get<7>(key);
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    if (st == CUBLAS_STATUS_SUCCESS) {
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                &align_w, sizeof(align_w));
    }
    if (st == CUBLAS_STATUS_SUCCESS) {
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                &align_x, sizeof(align_x));
    }
    if (st == CUBLAS_STATUS_SUCCESS) {
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                &align_y, sizeof(align_y));
    }
    if (st == CUBLAS_STATUS_SUCCESS) {
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                &align_y, sizeof(align_y));
    }
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    if (st == CUBLAS_STATUS_SUCCESS) {
      st = cublasLtMatmulAlgoGetHeuristic(handle, plan->op, plan->a, plan->b, plan->c, plan->c,
                                          pref, 1, &result, &found);
    }
    cublasLtMatmulPreferenceDestroy(pref);
    if (absl::Status s = check(st, "cublasLtMatmulAlgoGetHeuristic"); !s.ok()) return s;
    if (found == 0) {
      return absl::NotFoundError(absl::StrCat("cuBLASLt offers no algorithm for ", shape,
                                              " with ", workspace_bytes, " workspace bytes"));
    }
    plan->algo = result.algo;
    const Plan* p = plan.get();
    plans.emplace(key, std::move(plan));
    return p;
  }
};

absl::Status CublasStatus(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const std::string message = absl::StrCat(what, ": ", cublasGetStatusName(status), " (",
                                           cublasGetStatusString(status), ")");
  switch (status) {
    case CUBLAS_STATUS_ALLOC_FAILED:
      return absl::ResourceExhaustedError(message);
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return absl::UnavailableError(message);
    case CUBLAS_STATUS_INVALID_VALUE:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

Gemm::Gemm() = default;
Gemm::Gemm(std::unique_ptr<State> state) : state_(std::move(state)) {}
Gemm::~Gemm() = default;
Gemm::Gemm(Gemm&& other) noexcept = default;
Gemm& Gemm::operator=(Gemm&& other) noexcept = default;

absl::StatusOr<Gemm> Gemm::Create() {
  if (absl::Status s = CudaDeviceAvailable(); !s.ok()) return s;
  auto state = std::make_unique<State>();
  if (absl::Status s = CublasStatus(cublasLtCreate(&state->handle), "cublasLtCreate"); !s.ok()) {
    state->handle = nullptr;
    return s;
  }
  return Gemm(std::move(state));
}

bool Gemm::valid() const { return state_ != nullptr && state_->handle != nullptr; }

size_t Gemm::num_plans() const { return state_ == nullptr ? 0 : state_->plans.size(); }

absl::Status Gemm::SetWorkspace(void* workspace, size_t bytes) {
  if (!valid()) return absl::FailedPreconditionError("Gemm::SetWorkspace on an empty Gemm");
  state_->workspace = workspace;
  state_->workspace_bytes = workspace == nullptr ? 0 : bytes;
  state_->plans.clear();  // algorithms were chosen for the old workspace size
  return absl::OkStatus();
}

absl::Status Gemm::Linear(const void* x, int64_t m, int64_t k, const void* w, int64_t n,
                          const void* bias, void* y, DType in, DType out, cudaStream_t stream) {
  constexpr int64_t kMaxInt = std::numeric_limits<int>::max();
  if (!valid()) return absl::FailedPreconditionError("Gemm::Linear on an empty Gemm");
  if (m < 0 || k <= 0 || n <= 0 || m > kMaxInt || k > kMaxInt || n > kMaxInt) {
    return absl::InvalidArgumentError(
        absl::StrCat("Linear: bad shape m=", m, " k=", k, " n=", n));
  }
  if (!IsComputeDType(in) || (out != in && out != DType::kFloat32)) {
    return absl::InvalidArgumentError(absl::StrCat("Linear: unsupported dtypes ",
                                                   DTypeName(in), " -> ", DTypeName(out)));
  }
  if (m == 0) return absl::OkStatus();
  absl::StatusOr<const Plan*> plan = state_->GetPlan(m, n, k, in, out, w, x, y);
  if (!plan.ok()) return plan.status();
  const float alpha = 1.0f, beta = 0.0f;
  const cublasStatus_t st = cublasLtMatmul(
      state_->handle, (*plan)->op, &alpha, w, (*plan)->a, x, (*plan)->b, &beta, y, (*plan)->c, y,
      (*plan)->c, &(*plan)->algo, state_->workspace, state_->workspace_bytes, stream);
  if (st != CUBLAS_STATUS_SUCCESS) {
    return CublasStatus(
        st, absl::StrCat("cublasLtMatmul(m=", m, ", k=", k, ", n=", n, ", ", DTypeName(in),
                         " -> ", DTypeName(out), ")")
                .c_str());
  }
  if (bias != nullptr) return AddBias(y, m, n, bias, out, stream);
  return absl::OkStatus();
}

}  // namespace colo::kernels::cuda
