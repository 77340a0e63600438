#include "controller/demo/demo_trainer_main_lib.h"

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "controller/demo/demo_trainer.h"
#include "proto/server/auth.h"

ABSL_FLAG(std::string, controller, "", "host:port of the colo-controller.");
ABSL_FLAG(std::string, model, "", "Model directory the engines were started with (step 0).");
ABSL_FLAG(std::string, checkpoint_dir, "", "Checkpoints are written to DIR/step_<N>.");
ABSL_FLAG(int, cycles, 3, "Colocated cycles to run.");
ABSL_FLAG(int64_t, first_step, -1, "RL step of the first cycle; -1: the controller's step + 1.");
ABSL_FLAG(int, prompts, 4, "Prompts per engine per rollout.");
ABSL_FLAG(int, prompt_len, 8, "Tokens per prompt.");
ABSL_FLAG(int, max_new_tokens, 8, "Tokens generated per prompt.");
ABSL_FLAG(std::string, pause_mode, "retract", "Pause mode of PrepareTraining.");
ABSL_FLAG(int64_t, train_mib, 32, "MiB the training step allocates and touches.");
ABSL_FLAG(double, perturb, 0.05, "Relative weight change per step.");
ABSL_FLAG(std::string, auth_token_file, "", "Bearer token file for the controller.");
ABSL_FLAG(std::string, master_address, "",
          "Rendezvous address the engines reach this trainer at (default: the controller's).");
ABSL_FLAG(absl::Duration, rpc_timeout, absl::Seconds(120), "Deadline of each call.");

namespace colo {
namespace controller {
namespace demo {
namespace {

int Usage(const std::string& message) {
  std::fprintf(stderr, "colo-demo-trainer: %s\n", message.c_str());
  return 2;
}

}  // namespace

int DemoTrainerMain(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Runs colocated RL cycles against a colo-controller: rollout, PrepareTraining, train, "
      "BeginWeightSync, Gloo broadcast, FinishWeightSync.\n"
      "  colo-demo-trainer --controller=HOST:PORT --model=DIR --checkpoint_dir=DIR [--cycles=3]");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) return Usage(absl::StrCat("unexpected argument '", rest[1], "'"));
  DemoTrainerOptions o;
  o.controller = absl::GetFlag(FLAGS_controller);
  o.base_model = absl::GetFlag(FLAGS_model);
  o.checkpoint_dir = absl::GetFlag(FLAGS_checkpoint_dir);
  o.num_prompts = absl::GetFlag(FLAGS_prompts);
  o.prompt_len = absl::GetFlag(FLAGS_prompt_len);
  o.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  o.pause_mode = absl::GetFlag(FLAGS_pause_mode);
  o.train_bytes = absl::GetFlag(FLAGS_train_mib) << 20;
  o.perturb = absl::GetFlag(FLAGS_perturb);
  o.master_address = absl::GetFlag(FLAGS_master_address);
  o.rpc_timeout = absl::GetFlag(FLAGS_rpc_timeout);
  const int cycles = absl::GetFlag(FLAGS_cycles);
  if (o.controller.empty() || o.base_model.empty() || o.checkpoint_dir.empty()) {
    return Usage("--controller, --model and --checkpoint_dir are required");
  }
  if (cycles < 1) return Usage(absl::StrCat("--cycles must be >= 1, got ", cycles));
  if (const std::string path = absl::GetFlag(FLAGS_auth_token_file); !path.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile(path);
    if (!token.ok()) return Usage(absl::StrCat("--auth_token_file: ", token.status().message()));
    o.auth_token = *token;
  }
  absl::StatusOr<std::unique_ptr<DemoTrainer>> trainer = DemoTrainer::Create(o);
  if (!trainer.ok()) return Usage(std::string(trainer.status().message()));

  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "colo-demo-trainer: %s\n", s.ToString().c_str());
    return 1;
  };
  int64_t step = absl::GetFlag(FLAGS_first_step);
  if (step < 0) {
    absl::StatusOr<::colo::v1::NodeState> state = (*trainer)->GetState(false);
    if (!state.ok()) return fail(state.status());
    step = state->step() + 1;
  }
  std::vector<CycleReport> reports;
  for (int c = 0; c < cycles; ++c, ++step) {
    absl::StatusOr<CycleReport> report = (*trainer)->RunCycle(step);
    if (!report.ok()) return fail(report.status());
    std::printf("%s\n", FormatCycle(*report).c_str());
    std::fflush(stdout);
    reports.push_back(*std::move(report));
  }
  absl::StatusOr<RolloutReport> last = (*trainer)->Rollout();
  if (!last.ok()) return fail(last.status());
  std::printf("== rollout after the last cycle\n%s\n", FormatRollout(*last).c_str());
  std::printf("== summary (ms)\n%6s %9s %9s %9s %9s %9s %9s %9s\n", "step", "rollout", "prepare",
              "train", "begin", "bcast", "finish", "total");
  for (const CycleReport& r : reports) {
    std::printf("%6lld", static_cast<long long>(r.step));
    for (const PhaseRecord& p : r.phases) std::printf(" %9.1f", p.duration_us / 1e3);
    std::printf(" %9.1f\n", r.total_us / 1e3);
  }
  return 0;
}

}  // namespace demo
}  // namespace controller
}  // namespace colo
