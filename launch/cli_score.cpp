// `mlarun score`: logits at every position of a prompt (one full forward through the engine, prefix caching
// always off), written as tensor `logits` [L, vocab] F32 to a safetensors file. The file's path and the prompt
// are checked before the weights load.
#include <cstdio>
#include <memory>

#include "engine/engine.h"
#include "launch/cli_common.h"
#include "launch/commands.h"
#include "launch/output_path.h"
#include "launch/requests_file.h"
#include "runtime/error.h"
#include "runtime/safetensors.h"

namespace mlarun::cli {

Command add_score_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("score", "Logits of every prompt position, written to a safetensors file");
  auto o = std::make_shared<ModelOptions>();
  auto tokens = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  add_model_options(*cmd, *o);
  cmd->add_option("--prompt-ids,--tokens", *tokens, "Prompt token ids, comma-separated (e.g. 5,17,42)")->required();
  cmd->add_option("--out", *out, "Output safetensors file (tensor 'logits', F32 [L, vocab])")->required();
  return {cmd, [=]() {
            // Before any weight loads: the output writable, the ids inside the config's vocabulary.
            if (is_driver_process()) check_output_path("--out", *out);
            std::vector<int32_t> prompt = parse_id_list(*tokens, "--prompt-ids");
            check_ids_in_vocabulary(prompt, load_model_config_from_dir(o->model_dir).vocab_size, "--prompt-ids");
            o->runtime.enable_prefix_caching = false;  // every position's logits: nothing may come from the cache
            Session s = open_session(*o);
            Engine engine(s.options, *s.runner);
            SamplingParams params;
            params.max_tokens = 1;
            engine.add_request(prompt, params, RequestOptions{false, true});
            std::vector<RequestOutput> results = engine.run();
            const RequestOutput& r = results.at(0);
            if (r.finish_reason == FinishReason::Abort) fail(r.error);
            const int64_t L = int64_t(r.prompt_logits.size()), V = s.runner->vocab_size();
            MLARUN_CHECK(L == int64_t(prompt.size()), "score: got logits for ", L, " of ", prompt.size(), " positions");
            if (!s.is_driver()) return 0;
            Tensor logits = Tensor::empty({L, V}, DType::F32);
            for (int64_t i = 0; i < L; ++i)
              std::copy(r.prompt_logits[size_t(i)].begin(), r.prompt_logits[size_t(i)].end(), logits.data<float>() + i * V);
            write_safetensors(*out, {{"logits", logits}}, {{"format", "pt"}, {"producer", "mlarun score"}});
            std::fprintf(stderr, "mlarun: wrote logits [%lld, %lld] to %s\n", (long long)L, (long long)V, out->c_str());
            return 0;
          }};
}

}  // namespace mlarun::cli
