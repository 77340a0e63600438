#include "controller/coloctl_args.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace colo {
namespace controller {
namespace {

const std::set<std::string>& Commands() {
  static const auto* const kCommands =
      new std::set<std::string>{"status", "watch",    "engines",  "memory", "release", "resume",
                                "pause",  "continue", "generate", "cycle",  "recover",
                                "weight-groups"};
  return *kCommands;
}

bool ValidTag(const std::string& tag) {
  return tag == "weights" || tag == "kv_cache" || tag == "cuda_graph";
}

bool ValidMode(const std::string& mode) {
  return mode == "abort" || mode == "retract" || mode == "in_place";
}

absl::Status Bad(absl::string_view message) { return absl::InvalidArgumentError(message); }

}  // namespace

std::string ColoctlUsage() {
  return R"(usage: coloctl (--controller=HOST:PORT | --engine=HOST:PORT) [flags] COMMAND [command flags]

commands:
  status                       node phase, step, reason, engines with their health (yes,
                               STALE: no recent answer, NO: lost) and the age of their
                               last answer (engine: server info)
  watch                        stream phase changes (controller; for --timeout)
  engines                      list the node's engines (controller)
  memory                       per-tag memory, device and caching-allocator figures
  release --tags=T[,T]         release memory tags (weights, kv_cache, cuda_graph)
  resume --tags=T[,T]          resume memory tags
  pause --mode=M               pause generation (abort, retract, in_place)
  continue [--no-empty-cache]  continue generation (empties the caching allocator by default)
  generate --input_ids=1,2,3 [--max_new_tokens=N] [--temperature=T]
                               stream generated tokens (engine; with --controller the first engine)
  cycle [--pause_mode=M] [--step=N]
                               drive one colocated cycle: PrepareTraining -> BeginWeightSync ->
                               FinishWeightSync(trainer_weights_freed=true); prints a timeline
  recover                      FAILED -> ROLLOUT: resume released tags, continue (controller)
  weight-groups [--destroy=NAME]
                               list the engines' weight-update groups (rendezvous, rank, state:
                               ready/updating/broken, updates, last error); --destroy first
                               destroys group NAME (with --controller: on every engine)

flags:
  --output=table|json          output format (json: one protobuf JSON object per line)
  --timeout=30s                deadline of every RPC
  --auth_token_file=PATH       bearer token for mutating RPCs
  --tls_ca=PATH                PEM root certificates: connect with TLS

exit status: 0 ok, 1 RPC error (code and message on one line), 2 usage error
)";
}

absl::StatusOr<ColoctlArgs> ParseColoctlArgs(const std::vector<std::string>& argv) {
  ColoctlArgs args;
  bool have_tags = false, have_mode = false, have_input = false, have_no_empty_cache = false;
  bool have_gen_flags = false, have_cycle_flags = false, have_destroy = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (!absl::StartsWith(arg, "--")) {
      if (!args.command.empty()) {
        return Bad(
            absl::StrCat("unexpected argument '", arg, "' after command '", args.command, "'"));
      }
      if (Commands().count(arg) == 0) return Bad(absl::StrCat("unknown command '", arg, "'"));
      args.command = arg;
      continue;
    }
    std::string name = arg.substr(2), value;
    bool has_value = false;
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (name == "help" || name == "h") {
      args.help = true;
      continue;
    }
    if (name == "no-empty-cache" || name == "no_empty_cache") {
      if (has_value) return Bad("--no-empty-cache takes no value");
      args.empty_cache = false;
      have_no_empty_cache = true;
      continue;
    }
    static const std::set<std::string> kValued = {
        "controller",  "engine",     "output", "timeout",   "auth_token_file",
        "tls_ca",      "tags",       "mode",   "input_ids", "max_new_tokens",
        "temperature", "pause_mode", "step",   "destroy"};
    if (kValued.count(name) == 0) return Bad(absl::StrCat("unknown flag --", name));
    if (!has_value) {
      if (i + 1 >= argv.size()) return Bad(absl::StrCat("--", name, " needs a value"));
      value = argv[++i];
    }
    if (name == "controller") {
      args.controller = value;
    } else if (name == "engine") {
      args.engine = value;
    } else if (name == "output") {
      if (value != "table" && value != "json") {
        return Bad(absl::StrCat("--output must be table or json, got '", value, "'"));
      }
      args.output = value;
    } else if (name == "timeout") {
      if (!absl::ParseDuration(value, &args.timeout) || args.timeout <= absl::ZeroDuration()) {
        return Bad(
            absl::StrCat("--timeout must be a positive duration like 30s, got '", value, "'"));
      }
    } else if (name == "auth_token_file") {
      args.auth_token_file = value;
    } else if (name == "tls_ca") {
      args.tls_ca = value;
    } else if (name == "tags") {
      have_tags = true;
      args.tags.clear();
      for (absl::string_view tag : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        if (!ValidTag(std::string(tag))) {
          return Bad(absl::StrCat("--tags: unknown tag '", tag,
                                  "' (expected weights, kv_cache, cuda_graph)"));
        }
        args.tags.emplace_back(tag);
      }
      if (args.tags.empty()) return Bad("--tags must name at least one tag");
    } else if (name == "mode") {
      if (!ValidMode(value)) {
        return Bad(absl::StrCat("--mode must be abort, retract or in_place, got '", value, "'"));
      }
      args.mode = value;
      have_mode = true;
    } else if (name == "input_ids") {
      have_input = true;
      args.input_ids.clear();
      for (absl::string_view id : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        int32_t token = 0;
        if (!absl::SimpleAtoi(id, &token) || token < 0) {
          return Bad(absl::StrCat("--input_ids: '", id, "' is not a token id"));
        }
        args.input_ids.push_back(token);
      }
      if (args.input_ids.empty()) return Bad("--input_ids must list at least one token id");
    } else if (name == "max_new_tokens") {
      have_gen_flags = true;
      if (!absl::SimpleAtoi(value, &args.max_new_tokens) || args.max_new_tokens <= 0) {
        return Bad(absl::StrCat("--max_new_tokens must be a positive integer, got '", value, "'"));
      }
    } else if (name == "temperature") {
      have_gen_flags = true;
      if (!absl::SimpleAtof(value, &args.temperature) || args.temperature < 0) {
        return Bad(absl::StrCat("--temperature must be >= 0, got '", value, "'"));
      }
    } else if (name == "pause_mode") {
      have_cycle_flags = true;
      if (!ValidMode(value)) {
        return Bad(
            absl::StrCat("--pause_mode must be abort, retract or in_place, got '", value, "'"));
      }
      args.pause_mode = value;
    } else if (name == "destroy") {
      have_destroy = true;
      if (value.empty()) return Bad("--destroy needs a group name");
      args.destroy_group = value;
    } else if (name == "step") {
      have_cycle_flags = true;
      if (!absl::SimpleAtoi(value, &args.step) || args.step < 0) {
        return Bad(absl::StrCat("--step must be a non-negative integer, got '", value, "'"));
      }
    }
  }
  if (args.help) return args;
  if (args.command.empty()) return Bad("no command given");
  if (args.controller.empty() == args.engine.empty()) {
    return Bad("give exactly one of --controller=HOST:PORT or --engine=HOST:PORT");
  }
  const std::string& c = args.command;
  if ((c == "watch" || c == "engines" || c == "cycle" || c == "recover") &&
      args.controller.empty()) {
    return Bad(absl::StrCat("'", c, "' needs --controller"));
  }
  if ((c == "release" || c == "resume") != have_tags) {
    return Bad(have_tags ? absl::StrCat("--tags does not apply to '", c, "'")
                         : absl::StrCat("'", c, "' needs --tags=weights,kv_cache,cuda_graph"));
  }
  if ((c == "pause") != have_mode) {
    return Bad(have_mode ? absl::StrCat("--mode does not apply to '", c, "'")
                         : "'pause' needs --mode=abort|retract|in_place");
  }
  if (have_no_empty_cache && c != "continue") {
    return Bad(absl::StrCat("--no-empty-cache does not apply to '", c, "'"));
  }
  if ((c == "generate") != have_input) {
    return Bad(have_input ? absl::StrCat("--input_ids does not apply to '", c, "'")
                          : "'generate' needs --input_ids=1,2,3");
  }
  if (have_destroy && c != "weight-groups") {
    return Bad(absl::StrCat("--destroy does not apply to '", c, "'"));
  }
  if (have_gen_flags && c != "generate") {
    return Bad(absl::StrCat("--max_new_tokens/--temperature do not apply to '", c, "'"));
  }
  if (have_cycle_flags && c != "cycle") {
    return Bad(absl::StrCat("--pause_mode/--step do not apply to '", c, "'"));
  }
  return args;
}

}  // namespace controller
}  // namespace colo
