// A naive, unpaged, unbatched forward pass in double precision, written
// straight from the Hugging Face modeling code, for tests: returns the logits
// of every position of `tokens`. Reads weights by their HF names. Test-only.
#ifndef COLO_ENGINE_MODEL_REFERENCE_FORWARD_H_
#define COLO_ENGINE_MODEL_REFERENCE_FORWARD_H_

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/model/model_weights.h"
#include "kernels/cpu/rope.h"

namespace colo {
namespace engine {

inline std::vector<std::vector<double>> ReferenceForward(
    const ModelWeights& w, const std::vector<int32_t>& tokens) {
  const ModelConfig& c = w.config();
  const int64_t H = c.hidden_size, hd = c.head_dim, nh = c.num_heads,
                nkv = c.num_kv_heads, I = c.intermediate_size, T = tokens.size();
  auto get = [&w](const std::string& name) { return w.Find(name).value().data; };
  auto rms = [&](const std::vector<double>& x, const float* weight) {
    double ss = 0;
    for (double v : x) ss += v * v;
    double inv = 1.0 / std::sqrt(ss / x.size() + c.rms_norm_eps);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = weight[i] * x[i] * inv;
    return y;
  };
  auto linear = [](const std::vector<double>& x, const float* m, int64_t out,
                   const float* bias) {
    std::vector<double> y(out);
    for (int64_t o = 0; o < out; ++o) {
      double s = bias ? bias[o] : 0.0;
      for (size_t i = 0; i < x.size(); ++i) s += x[i] * m[o * x.size() + i];
      y[o] = s;
    }
    return y;
  };
  std::vector<double> inv_freq = kernels::RopeInverseFrequencies(
      static_cast<int>(hd), c.rope_theta, c.rope_scaling);
  const double rope_scale = kernels::RopeAttentionScaling(c.rope_scaling);
  auto rope = [&](std::vector<double>& v, int64_t heads, int64_t pos) {
    for (int64_t h = 0; h < heads; ++h) {
      double* x = &v[h * hd];
      for (int64_t i = 0; i < hd / 2; ++i) {
        double a = pos * inv_freq[i], cs = rope_scale * std::cos(a),
               sn = rope_scale * std::sin(a);
        double x1 = x[i], x2 = x[i + hd / 2];
        x[i] = x1 * cs - x2 * sn;
        x[i + hd / 2] = x2 * cs + x1 * sn;
      }
    }
  };
  std::vector<std::vector<double>> hidden(T, std::vector<double>(H));
  const float* emb = get("model.embed_tokens.weight");
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < H; ++i) hidden[t][i] = emb[tokens[t] * H + i];
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    auto opt = [&](const std::string& n) -> const float* {
      auto f = w.Find(p + n);
      return f.ok() ? f->data : nullptr;
    };
    std::vector<std::vector<double>> q(T), k(T), v(T);
    for (int64_t t = 0; t < T; ++t) {
      auto x = rms(hidden[t], get(p + "input_layernorm.weight"));
      q[t] = linear(x, get(p + "self_attn.q_proj.weight"), nh * hd, opt("self_attn.q_proj.bias"));
      k[t] = linear(x, get(p + "self_attn.k_proj.weight"), nkv * hd, opt("self_attn.k_proj.bias"));
      v[t] = linear(x, get(p + "self_attn.v_proj.weight"), nkv * hd, opt("self_attn.v_proj.bias"));
      if (c.qk_norm) {
        for (int64_t h = 0; h < nh; ++h) {
          std::vector<double> s(q[t].begin() + h * hd, q[t].begin() + (h + 1) * hd);
          s = rms(s, get(p + "self_attn.q_norm.weight"));
          std::copy(s.begin(), s.end(), q[t].begin() + h * hd);
        }
        for (int64_t h = 0; h < nkv; ++h) {
          std::vector<double> s(k[t].begin() + h * hd, k[t].begin() + (h + 1) * hd);
          s = rms(s, get(p + "self_attn.k_norm.weight"));
          std::copy(s.begin(), s.end(), k[t].begin() + h * hd);
        }
      }
      rope(q[t], nh, t);
      rope(k[t], nkv, t);
    }
    const bool sliding = c.layer_types[l] == LayerType::kSlidingAttention;
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> attn(nh * hd, 0.0);
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t kvh = h / (nh / nkv);
        std::vector<double> sc;
        std::vector<int64_t> js;
        for (int64_t j = 0; j <= t; ++j) {
          if (sliding && t - j >= c.sliding_window) continue;
          double d = 0;
          for (int64_t e = 0; e < hd; ++e) d += q[t][h * hd + e] * k[j][kvh * hd + e];
          sc.push_back(d / std::sqrt(static_cast<double>(hd)));
          js.push_back(j);
        }
        double mx = -1e300, sum = 0;
        for (double s : sc) mx = std::max(mx, s);
        const float* sinks = opt("self_attn.sinks");
        if (sinks != nullptr) mx = std::max<double>(mx, sinks[h]);
        for (double& s : sc) sum += (s = std::exp(s - mx));
        if (sinks != nullptr) sum += std::exp(sinks[h] - mx);
        for (size_t m = 0; m < js.size(); ++m)
          for (int64_t e = 0; e < hd; ++e)
            attn[h * hd + e] += sc[m] / sum * v[js[m]][kvh * hd + e];
      }
      auto o = linear(attn, get(p + "self_attn.o_proj.weight"), H, opt("self_attn.o_proj.bias"));
      for (int64_t i = 0; i < H; ++i) hidden[t][i] += o[i];
    }
    for (int64_t t = 0; t < T && c.IsMoeLayer(l); ++t) {
      auto x = rms(hidden[t], get(p + "post_attention_layernorm.weight"));
      const bool gpt_oss = c.moe.layout == ExpertLayout::kFusedTransposed;
      const int64_t E = c.moe.num_experts, K = c.moe.experts_per_token, EI = c.moe.intermediate_size;
      auto logits = linear(x, get(p + (gpt_oss ? "mlp.router.weight" : "mlp.gate.weight")), E,
                           opt("mlp.router.bias"));
      // Top k (ties to the lower index), weights as the HF routers.
      std::vector<int64_t> order(E);
      for (int64_t e = 0; e < E; ++e) order[e] = e;
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
      std::vector<std::pair<int64_t, double>> chosen;
      if (gpt_oss) {
        double sum = 0;
        for (int64_t j = 0; j < K; ++j) sum += std::exp(logits[order[j]] - logits[order[0]]);
        for (int64_t j = 0; j < K; ++j)
          chosen.push_back({order[j], std::exp(logits[order[j]] - logits[order[0]]) / sum});
      } else {
        double sum = 0, top = 0;
        for (int64_t e = 0; e < E; ++e) sum += std::exp(logits[e] - logits[order[0]]);
        for (int64_t j = 0; j < K; ++j) top += std::exp(logits[order[j]] - logits[order[0]]) / sum;
        for (int64_t j = 0; j < K; ++j) {
          double w = std::exp(logits[order[j]] - logits[order[0]]) / sum;
          chosen.push_back({order[j], c.moe.norm_topk_prob ? w / top : w});
        }
      }
      for (const auto& [e, weight] : chosen) {
        std::vector<double> y(H, 0.0);
        if (gpt_oss) {
          const float* gu = get(p + "mlp.experts.gate_up_proj") + e * H * 2 * EI;
          const float* gub = get(p + "mlp.experts.gate_up_proj_bias") + e * 2 * EI;
          const float* dn = get(p + "mlp.experts.down_proj") + e * EI * H;
          const float* dnb = get(p + "mlp.experts.down_proj_bias") + e * H;
          std::vector<double> act(EI);
          for (int64_t i = 0; i < EI; ++i) {
            double g = gub[2 * i], u = gub[2 * i + 1];
            for (int64_t k = 0; k < H; ++k) {
              g += x[k] * gu[k * 2 * EI + 2 * i];
              u += x[k] * gu[k * 2 * EI + 2 * i + 1];
            }
            const double lim = c.moe.swiglu_limit;
            g = std::min(g, lim);
            u = std::max(std::min(u, lim), -lim);
            act[i] = (u + 1) * g / (1 + std::exp(-c.moe.swiglu_alpha * g));
          }
          for (int64_t o = 0; o < H; ++o) {
            y[o] = dnb[o];
            for (int64_t i = 0; i < EI; ++i) y[o] += act[i] * dn[i * H + o];
          }
        } else {
          const std::string pe = absl::StrCat(p, "mlp.experts.", e, ".");
          auto g = linear(x, get(pe + "gate_proj.weight"), EI, nullptr);
          auto u = linear(x, get(pe + "up_proj.weight"), EI, nullptr);
          for (int64_t i = 0; i < EI; ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
          y = linear(g, get(pe + "down_proj.weight"), H, nullptr);
        }
        for (int64_t o = 0; o < H; ++o) hidden[t][o] += weight * y[o];
      }
    }
    for (int64_t t = 0; t < T && !c.IsMoeLayer(l); ++t) {
      auto x = rms(hidden[t], get(p + "post_attention_layernorm.weight"));
      auto g = linear(x, get(p + "mlp.gate_proj.weight"), I, nullptr);
      auto u = linear(x, get(p + "mlp.up_proj.weight"), I, nullptr);
      for (int64_t i = 0; i < I; ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
      auto d = linear(g, get(p + "mlp.down_proj.weight"), H, nullptr);
      for (int64_t i = 0; i < H; ++i) hidden[t][i] += d[i];
    }
  }
  std::vector<std::vector<double>> logits(T);
  const float* head = c.tie_word_embeddings ? emb : get("lm_head.weight");
  for (int64_t t = 0; t < T; ++t) {
    auto x = rms(hidden[t], get("model.norm.weight"));
    logits[t] = linear(x, head, c.vocab_size, nullptr);
  }
  return logits;
}

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_REFERENCE_FORWARD_H_
