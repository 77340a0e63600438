// TLS flags of the two servers (real processes, certificates made with the
// openssl CLI that bazel/setup.sh installs): a private key that does not
// belong to the certificate is reported as such, naming both files, and the
// process exits non-zero at once (it used to say "cannot listen ... address
// in use"); a malformed PEM is named too; a matching pair serves.
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/util/child_process.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

struct Pem {
  std::string cert;
  std::string key;
};

absl::StatusOr<Pem> MakeSelfSigned(const std::string& dir, const std::string& name) {
  Pem pem{absl::StrCat(dir, "/", name, "_cert.pem"), absl::StrCat(dir, "/", name, "_key.pem")};
  CommandResult r = RunCommand(absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -keyout ", pem.key,
      " -out ", pem.cert));
  if (r.exit_code != 0) return absl::InternalError(absl::StrCat("openssl: ", r.output));
  return pem;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (RunCommand("openssl version").exit_code != 0) GTEST_SKIP() << "no openssl CLI";
    dir_ = MakeTempDir("tls_");
    ASSERT_OK_AND_ASSIGN(a_, MakeSelfSigned(dir_, "a"));
    ASSERT_OK_AND_ASSIGN(b_, MakeSelfSigned(dir_, "b"));
    ASSERT_OK_AND_ASSIGN(model_, E2EModel());
  }

  // Runs the binary until it exits (bounded); returns its exit code and log.
  CommandResult RunToExit(const std::string& binary, const std::vector<std::string>& args) {
    CommandResult result;
    absl::StatusOr<std::unique_ptr<ChildProcess>> child =
        ChildProcess::Spawn(RunfilePath(binary), args, "tls_child");
    EXPECT_OK(child.status());
    if (!child.ok()) return result;
    absl::StatusOr<int> status = (*child)->Wait(absl::Seconds(60));
    EXPECT_OK(status.status()) << (*child)->LogTail();
    if (status.ok() && WIFEXITED(*status)) result.exit_code = WEXITSTATUS(*status);
    result.output = (*child)->LogTail();
    return result;
  }

  std::vector<std::string> EngineArgs(const Pem& cert_from, const Pem& key_from) {
    return {absl::StrCat("--model=", model_), "--device=cpu", "--kv_cache_bytes=4194304",
            "--port=0", absl::StrCat("--tls_cert=", cert_from.cert),
            absl::StrCat("--tls_key=", key_from.key)};
  }
  std::vector<std::string> ControllerArgs(const Pem& cert_from, const Pem& key_from) {
    return {"--engines=127.0.0.1:1", "--port=0", "--health_interval=0",
            absl::StrCat("--tls_cert=", cert_from.cert), absl::StrCat("--tls_key=", key_from.key)};
  }

  std::string dir_;
  std::string model_;
  Pem a_;
  Pem b_;
};

TEST_F(TlsTest, MismatchedKeyIsReportedAsSuch) {
  for (const std::string binary : {"engine/server/colo-engine", "controller/colo-controller"}) {
    SCOPED_TRACE(binary);
    const bool engine = binary == "engine/server/colo-engine";
    CommandResult r = RunToExit(binary, engine ? EngineArgs(a_, b_) : ControllerArgs(a_, b_));
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.exit_code, -1) << r.output;
    EXPECT_THAT(r.output, AllOf(HasSubstr("does not match"), HasSubstr(a_.cert),
                                HasSubstr(b_.key), Not(HasSubstr("address in use"))));
  }
}

TEST_F(TlsTest, MalformedPemIsNamed) {
  const std::string junk = dir_ + "/junk.pem";
  ASSERT_EQ(RunCommand(absl::StrCat("echo not-a-pem > ", junk)).exit_code, 0);
  Pem bad_cert{junk, a_.key};
  for (const std::string binary : {"engine/server/colo-engine", "controller/colo-controller"}) {
    SCOPED_TRACE(binary);
    const bool engine = binary == "engine/server/colo-engine";
    CommandResult r =
        RunToExit(binary, engine ? EngineArgs(bad_cert, a_) : ControllerArgs(bad_cert, a_));
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output,
                AllOf(HasSubstr("--tls_cert"), HasSubstr(junk), Not(HasSubstr("address in use"))));
  }
}

TEST_F(TlsTest, MatchingPairServes) {
  for (const std::string binary : {"engine/server/colo-engine", "controller/colo-controller"}) {
    SCOPED_TRACE(binary);
    const bool engine = binary == "engine/server/colo-engine";
    std::vector<std::string> args = engine ? EngineArgs(a_, a_) : ControllerArgs(a_, a_);
    const std::string port_file = MakeTempDir("tls_port") + "/port";
    args.push_back(absl::StrCat("--port_file=", port_file));
    ASSERT_OK_AND_ASSIGN(auto child, ChildProcess::Spawn(RunfilePath(binary), args, "tls_ok"));
    EXPECT_OK(WaitForPortFile(port_file, *child, absl::Seconds(60)).status()) << child->LogTail();
    ::kill(child->pid(), SIGTERM);
    ASSERT_OK_AND_ASSIGN(int status, child->Wait(absl::Seconds(60)));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << child->LogTail();
  }
}

}  // namespace
}  // namespace colo::test_util
