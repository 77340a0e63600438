#include "weight_sync/gloo_transport.h"

#include <chrono>
#include <exception>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gloo/allreduce.h"
#include "gloo/barrier.h"
#include "gloo/broadcast.h"
#include "gloo/common/error.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/store.h"
#include "gloo/transport/tcp/device.h"

namespace colo {
namespace weight_sync {
namespace {

std::chrono::milliseconds ToChrono(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

// gloo::rendezvous::Store over a RendezvousStore, bounded by the init
// deadline. Gloo expects stores to throw; the exception is caught in Create.
class GlooStoreAdapter : public gloo::rendezvous::Store {
 public:
  GlooStoreAdapter(RendezvousStore* store, absl::Time deadline)
      : store_(store), deadline_(deadline) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    absl::Status st = store_->Set(Key(key), std::string(data.begin(), data.end()));
    if (!st.ok()) throw gloo::IoException(std::string(st.message()));
  }
  std::vector<char> get(const std::string& key) override {
    absl::StatusOr<std::string> v = store_->Get(Key(key), deadline_);
    if (!v.ok()) throw gloo::IoException(std::string(v.status().message()));
    return std::vector<char>(v->begin(), v->end());
  }
  void wait(const std::vector<std::string>& keys) override {
    wait(keys, std::chrono::milliseconds(absl::ToInt64Milliseconds(
                   deadline_ - absl::Now())));
  }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    const absl::Time deadline =
        std::min(deadline_, absl::Now() + absl::Milliseconds(timeout.count()));
    for (const std::string& k : keys) {
      absl::StatusOr<std::string> v = store_->Get(Key(k), deadline);
      if (!v.ok()) throw gloo::IoException(std::string(v.status().message()));
    }
  }

 private:
  static std::string Key(const std::string& k) { return "gloo/" + k; }
  RendezvousStore* const store_;
  const absl::Time deadline_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GlooTransport>> GlooTransport::Create(
    const TransportOptions& options, std::unique_ptr<TcpStoreServer> server) {
  absl::Status st = ValidateTransportOptions(options);
  if (!st.ok()) return st;
  const absl::Time deadline = absl::Now() + options.init_timeout;
  absl::StatusOr<std::unique_ptr<Rendezvous>> rv =
      JoinRendezvous(options, std::move(server), deadline);
  if (!rv.ok()) return rv.status();

  std::shared_ptr<gloo::rendezvous::Context> context;
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = (*rv)->local_address;
    std::shared_ptr<gloo::transport::Device> device =
        gloo::transport::tcp::CreateDevice(attr);
    context = std::make_shared<gloo::rendezvous::Context>(options.rank,
                                                          options.world_size);
    context->setTimeout(ToChrono(
        std::max(deadline - absl::Now(), absl::Milliseconds(1))));
    GlooStoreAdapter store((*rv)->store(), deadline);
    context->connectFullMesh(store, device);
    // Everyone connected: from here on a rank that returns from Create can
    // rely on its peers having done the same.
    gloo::BarrierOptions barrier(context);
    barrier.setTimeout(ToChrono(
        std::max(deadline - absl::Now(), absl::Milliseconds(1))));
    gloo::barrier(barrier);
    context->setTimeout(ToChrono(options.transfer_timeout));
  } catch (const std::exception& e) {
    return absl::DeadlineExceededError(absl::StrCat(
        "gloo group \"", options.group_name, "\" rank ", options.rank, "/",
        options.world_size, " could not connect within the init timeout (",
        absl::FormatDuration(options.init_timeout), "): ", e.what()));
  }
  return std::unique_ptr<GlooTransport>(
      new GlooTransport(options, std::move(rv).value(), std::move(context)));
}

GlooTransport::GlooTransport(const TransportOptions& options,
                             std::unique_ptr<Rendezvous> rendezvous,
                             std::shared_ptr<gloo::Context> context)
    : options_(options),
      master_port_(rendezvous->master_port),
      rendezvous_(std::move(rendezvous)),
      context_(std::move(context)) {}

GlooTransport::~GlooTransport() { Close(); }

absl::Status GlooTransport::Run(const char* op, const std::function<void()>& fn) {
  if (context_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "gloo group \"", options_.group_name, "\" is closed"));
  }
  if (broken_.load()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "gloo group \"", options_.group_name, "\" is broken by an earlier "
        "failed collective; destroy and re-create the group"));
  }
  try {
    fn();
  } catch (const std::exception& e) {
    broken_.store(true);
    return absl::AbortedError(absl::StrCat(
        "gloo ", op, " in group \"", options_.group_name, "\" (rank ",
        options_.rank, "/", options_.world_size, ", timeout ",
        absl::FormatDuration(options_.transfer_timeout), ") failed: ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status GlooTransport::Broadcast(void* data, size_t bytes, int root) {
  if (root < 0 || root >= options_.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("broadcast root ", root,
                                                   " outside the group"));
  }
  if (bytes == 0) return absl::OkStatus();
  return Run("broadcast", [&] {
    gloo::BroadcastOptions opts(context_);
    opts.setOutput(static_cast<uint8_t*>(data), bytes);
    opts.setRoot(root);
    opts.setTag(next_tag_++);
    opts.setTimeout(ToChrono(options_.transfer_timeout));
    gloo::broadcast(opts);
  });
}

absl::StatusOr<int32_t> GlooTransport::AllReduceMin(int32_t value) {
  int32_t v = value;
  absl::Status st = Run("allreduce(min)", [&] {
    gloo::AllreduceOptions opts(context_);
    opts.setOutput(&v, 1);
    opts.setReduceFunction(
        static_cast<void (*)(void*, const void*, const void*, size_t)>(
            &gloo::min<int32_t>));
    opts.setTag(next_tag_++);
    opts.setTimeout(ToChrono(options_.transfer_timeout));
    gloo::allreduce(opts);
  });
  if (!st.ok()) return st;
  return v;
}

absl::Status GlooTransport::Barrier() {
  return Run("barrier", [&] {
    gloo::BarrierOptions opts(context_);
    opts.setTag(next_tag_++);
    opts.setTimeout(ToChrono(options_.transfer_timeout));
    gloo::barrier(opts);
  });
}

bool GlooTransport::broken() const {
  if (broken_.load()) return true;
  return rendezvous_ != nullptr && rendezvous_->client != nullptr &&
         rendezvous_->client->PeerClosed();
}

void GlooTransport::Close() {
  context_.reset();
  rendezvous_.reset();
}

}  // namespace weight_sync
}  // namespace colo
