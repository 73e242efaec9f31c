// `mlarun info --config FILE` on hostile configs (issue 13): a YAML "billion laughs", sizes of 2^62 and 2^31 layers,
// a parameter count that overflows int64, and infinities. The binary runs under an alarm and an address-space
// limit (no limit under ASan, which reserves terabytes); each must exit 1 within seconds, in little memory, with
// a message naming the file, the key, the value and the limit.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "test_util.h"

using mlarun::testing::ScratchDir;

namespace {

using mlarun::testing::kAsan;

struct Run {
  int status = 0;  // as waitpid reports it
  std::string output;
  double seconds = 0;
  long max_rss_kb = 0;
};

// `mlarun info --config path`, stdout and stderr together, killed by SIGALRM after 20 s.
Run info(const std::string& path) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  auto start = std::chrono::steady_clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    alarm(20);  // survives exec
    if (!kAsan) {
      rlimit as{rlim_t(4) << 30, rlim_t(4) << 30};
      setrlimit(RLIMIT_AS, &as);
    }
    execl(MLARUN_BINARY, MLARUN_BINARY, "info", "--config", path.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  Run r;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) r.output.append(buf, size_t(n));
  close(fds[0]);
  rusage usage{};
  wait4(pid, &r.status, 0, &usage);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.max_rss_kb = usage.ru_maxrss;
  return r;
}

void expect_refused(const std::string& path, const std::vector<std::string>& parts) {
  Run r = info(path);
  ASSERT_TRUE(WIFEXITED(r.status)) << path << " was killed (signal " << WTERMSIG(r.status) << "): " << r.output;
  EXPECT_EQ(WEXITSTATUS(r.status), 1) << path << ": " << r.output;
  EXPECT_LT(r.seconds, 5.0) << path;
  EXPECT_LT(r.max_rss_kb, 512L * 1024) << path;
  for (const std::string& part : parts)
    EXPECT_NE(r.output.find(part), std::string::npos) << path << ": " << r.output << "\nmissing: " << part;
}

}  // namespace

TEST(CliBadConfigs, BillionLaughsYamlEndsQuickly) {
  ScratchDir dir;
  std::string text = "a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n";
  std::string prev = "a";
  for (const char* name : {"b", "c", "d", "e", "f", "g", "h", "i"}) {
    text += std::string(name) + ": &" + name + " [";
    for (int k = 0; k < 9; ++k) text += (k ? ", *" : "*") + prev;
    text += "]\n";
    prev = name;
  }
  ASSERT_LT(text.size(), 450u);
  expect_refused(dir.write("laughs.yaml", text), {"laughs.yaml", "expands to more than 100000 values"});
  expect_refused(dir.write("cycle.yaml", "r: &r [*r]\n"), {"cycle.yaml", "'r[0]'", "cycle"});
}

TEST(CliBadConfigs, HugeSizesEndQuickly) {
  ScratchDir dir;
  expect_refused(dir.write("layers.json", R"({"n_layers": 4611686018427387904})"),
                 {"layers.json", "'n_layers'", "4611686018427387904", "limit of 4096"});
  expect_refused(dir.write("layers.yaml", "n_layers: 1000000000\n"), {"layers.yaml", "'n_layers'", "1000000000", "4096"});
  expect_refused(dir.write("kv.json", R"({"kv_lora_rank": 4611686018427387904})"),
                 {"kv.json", "'kv_lora_rank'", "limit of 1048576"});
  std::string hf_dir = dir.file("ckpt");
  std::filesystem::create_directories(hf_dir);
  dir.write("ckpt/config.json", R"({"model_type": "deepseek_v3", "vocab_size": 64, "hidden_size": 32,
    "intermediate_size": 48, "num_hidden_layers": 2147483648, "num_attention_heads": 4, "kv_lora_rank": 16,
    "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8})");
  expect_refused(hf_dir, {"config.json", "'num_hidden_layers'", "2147483648", "limit of 4096"});
  expect_refused(dir.write("params.json", R"({"n_layers": 4096, "dim": 1048576, "moe_inter_dim": 1048576,
    "n_routed_experts": 65536})"), {"params.json", "parameter count overflows", "n_routed_experts", "moe_inter_dim"});
}

TEST(CliBadConfigs, NonFiniteNumbersNameTheKey) {
  ScratchDir dir;
  expect_refused(dir.write("scale.json", R"({"route_scale": 1e400})"), {"scale.json", "route_scale", "1e400"});
  expect_refused(dir.write("eps.yaml", "rope_theta: .inf\n"), {"eps.yaml", "'rope_theta'", ".inf", "finite"});
}
