import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkConfig, familyForConfig, registerFamily, registeredModelTypes } from '../../src/model/families/index.js';
import type { Idefics3Spec as Idefics3Config } from '../../src/model/families/idefics3.js';
import { idefics3 } from '../../src/model/families/idefics3.js';
import type { LlavaSpec as LlavaConfig } from '../../src/model/families/llava.js';
import type { VlmSpec } from '../../src/model/vlm.js';
import { LLAVA_INTERLEAVE_05B_CONFIG, SMOLVLM_256M_CONFIG } from './helpers.js';

const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x));
const ref = (name: string) => JSON.parse(readFileSync(`../shared/reference/${name}/model/config.json`, 'utf8'));

describe('checkConfig: normalised configs', () => {
  it('SmolVLM-256M: the real numbers, vision defaults from Idefics3VisionConfig', () => {
    const c = checkConfig(SMOLVLM_256M_CONFIG) as Idefics3Config;
    expect(c.family).toBe('idefics3');
    expect(c.text).toEqual({
      modelType: 'llama',
      hidden: 576,
      heads: 9,
      kvHeads: 3,
      headDim: 64,
      inter: 1536,
      layers: 30,
      vocab: 49280,
      rmsEps: 1e-5,
      ropeTheta: 100000,
      ropeType: 'default',
      tieWordEmbeddings: false,
      attnBias: false,
      oBias: false,
      mlpBias: false,
      hiddenAct: 'silu',
      maxPositions: 8192,
    });
    expect(c.vision).toEqual({
      modelType: 'idefics3',
      hidden: 768,
      heads: 12,
      inter: 3072,
      layers: 12,
      imageSize: 512,
      patchSize: 16,
      numChannels: 3,
      layerNormEps: 1e-6,
      hiddenAct: 'gelu_pytorch_tanh',
    });
    expect(c.scaleFactor).toBe(4);
    expect(c.imageTokenId).toBe(49190);
    expect(c.tokensPerImage).toBe(64); // (512/16)^2 / 4^2, SmolVLM's image_seq_len
    expect(c.defaulted).toEqual(
      expect.arrayContaining([
        'vision_config.intermediate_size',
        'vision_config.num_hidden_layers',
        'vision_config.layer_norm_eps',
      ]),
    );
    // usable where the graph builders take a VlmSpec
    const spec: VlmSpec = c;
    expect(spec.text.attnBias).toBe(false);
  });

  it('SmolVLM-500M: head_dim given (960/15 = 64)', () => {
    const raw = clone(SMOLVLM_256M_CONFIG);
    Object.assign(raw.text_config, {
      hidden_size: 960,
      intermediate_size: 2560,
      num_attention_heads: 15,
      num_key_value_heads: 5,
      num_hidden_layers: 32,
    });
    const c = checkConfig(raw);
    expect([c.text.hidden, c.text.heads, c.text.kvHeads, c.text.headDim, c.text.layers, c.text.inter]).toEqual([
      960, 15, 5, 64, 32, 2560,
    ]);
  });

  it('llava-interleave-qwen-0.5b: qwen2 biases, tied embeddings, 729 image tokens with "full", 728 with "default"', () => {
    const c = checkConfig(LLAVA_INTERLEAVE_05B_CONFIG) as LlavaConfig;
    expect(c.family).toBe('llava');
    expect(c.text).toMatchObject({
      modelType: 'qwen2',
      hidden: 1024,
      heads: 16,
      kvHeads: 16,
      headDim: 64,
      inter: 2816,
      layers: 24,
      vocab: 152000,
      rmsEps: 1e-6,
      ropeTheta: 1e6,
      tieWordEmbeddings: true,
      attnBias: true,
      oBias: false,
      mlpBias: false,
    });
    expect(c.vision).toMatchObject({ hidden: 1152, heads: 16, inter: 4304, layers: 26, imageSize: 384, patchSize: 14 });
    expect(c).toMatchObject({
      imageTokenId: 151646,
      featureLayer: -1,
      featureHiddenState: 26,
      selectStrategy: 'full',
      projectorAct: 'gelu',
      projectorBias: true,
      tokensPerImage: 729,
    });
    const d = checkConfig({
      ...clone(LLAVA_INTERLEAVE_05B_CONFIG),
      vision_feature_select_strategy: 'default',
      vision_feature_layer: -2,
    }) as LlavaConfig;
    expect([d.tokensPerImage, d.featureHiddenState]).toEqual([728, 25]);
  });

  it('the reference cases: rope_parameters, image_token_id vs image_token_index, tied embeddings', () => {
    const i = checkConfig(ref('idefics3-public')) as Idefics3Config;
    expect(i).toMatchObject({ imageTokenId: 2, scaleFactor: 2, tokensPerImage: 4 });
    expect(i.text).toMatchObject({ hidden: 48, heads: 4, kvHeads: 2, headDim: 12, ropeTheta: 10000, rmsEps: 1e-5, vocab: 60 });
    expect(i.vision).toMatchObject({ modelType: 'idefics3_vision', hidden: 32, imageSize: 32, patchSize: 8 });
    const iv = checkConfig(ref('idefics3-public-visionlora'));
    expect(iv.text.tieWordEmbeddings).toBe(true);
    const l = checkConfig(ref('llava-public')) as LlavaConfig;
    expect(l).toMatchObject({
      imageTokenId: 2,
      tokensPerImage: 16,
      featureLayer: -1,
      featureHiddenState: 2,
      projectorBias: true,
    });
    expect(l.text).toMatchObject({ modelType: 'qwen2', ropeTheta: 1e6, attnBias: true });
    expect((checkConfig(ref('llava-public-visionlora')) as LlavaConfig).featureHiddenState).toBe(1);
  });

  it('head_dim falls back to hidden / heads; rope_theta at the top level of text_config', () => {
    const raw = clone(SMOLVLM_256M_CONFIG) as Record<string, any>;
    delete raw.text_config.head_dim;
    raw.text_config.rope_theta = 12345;
    const c = checkConfig(raw);
    expect([c.text.headDim, c.text.ropeTheta]).toEqual([64, 12345]);
  });
});

describe('checkConfig: errors name the file and the field', () => {
  const bad = (mut: (c: Record<string, any>) => void, base: object = SMOLVLM_256M_CONFIG) => {
    const c = clone(base) as Record<string, any>;
    mut(c);
    return () => checkConfig(c, 'ckpt/config.json');
  };
  it('missing fields', () => {
    expect(bad((c) => delete c.text_config.num_attention_heads)).toThrow(
      'ckpt/config.json: field "text_config.num_attention_heads" is missing',
    );
    expect(bad((c) => delete c.vision_config)).toThrow('ckpt/config.json: field "vision_config" is missing');
    expect(bad((c) => delete c.scale_factor)).toThrow('ckpt/config.json: field "scale_factor" is missing');
    expect(bad((c) => delete c.image_token_id)).toThrow('field "image_token_id" is missing');
    expect(bad((c) => delete c.image_token_index, LLAVA_INTERLEAVE_05B_CONFIG)).toThrow(
      'field "image_token_index" is missing (nor is image_token_id there)',
    );
    expect(bad((c) => delete c.vision_feature_layer, LLAVA_INTERLEAVE_05B_CONFIG)).toThrow(
      'field "vision_feature_layer" is missing',
    );
    expect(bad((c) => delete c.vision_feature_select_strategy, LLAVA_INTERLEAVE_05B_CONFIG)).toThrow(
      'field "vision_feature_select_strategy" is missing',
    );
    expect(bad((c) => delete c.model_type)).toThrow('ckpt/config.json: field "model_type" is missing');
  });
  it('wrong values', () => {
    expect(
      bad((c) => {
        c.model_type = 'blip2';
      }),
    ).toThrow(/ckpt\/config.json: model_type "blip2" is not supported; supported: .*idefics3.*llava/);
    expect(
      bad((c) => {
        c.text_config.model_type = 'mistral';
      }),
    ).toThrow('field "text_config.model_type" is "mistral"; supported: llama, qwen2');
    expect(
      bad((c) => {
        c.vision_config.model_type = 'clip_vision_model';
      }, LLAVA_INTERLEAVE_05B_CONFIG),
    ).toThrow('field "vision_config.model_type" is "clip_vision_model"; expected siglip_vision_model');
    expect(
      bad((c) => {
        c.text_config.hidden_size = '576';
      }),
    ).toThrow('field "text_config.hidden_size" must be a number (got "576")');
    expect(
      bad((c) => {
        c.text_config.num_key_value_heads = 4;
      }),
    ).toThrow('field "text_config.num_key_value_heads" (4) must divide num_attention_heads (9)');
    expect(
      bad((c) => {
        c.scale_factor = 3;
      }),
    ).toThrow('field "scale_factor" (3) must divide the patch grid side (32');
    expect(
      bad((c) => {
        c.vision_feature_layer = [-2, -1];
      }, LLAVA_INTERLEAVE_05B_CONFIG),
    ).toThrow('field "vision_feature_layer" is a list');
    expect(
      bad((c) => {
        c.vision_feature_layer = 27;
      }, LLAVA_INTERLEAVE_05B_CONFIG),
    ).toThrow("outside the tower's 27 hidden states");
    expect(
      bad((c) => {
        c.vision_feature_select_strategy = 'cls';
      }, LLAVA_INTERLEAVE_05B_CONFIG),
    ).toThrow('"vision_feature_select_strategy" is "cls"');
  });
});

describe('checkConfig: converted, not cast (what the graphs implement, and nothing else)', () => {
  const conv = (mut: (c: Record<string, any>) => void, base: object = SMOLVLM_256M_CONFIG) => {
    const c = clone(base) as Record<string, any>;
    mut(c);
    return checkConfig(c, 'ckpt/config.json');
  };
  const bad =
    (mut: (c: Record<string, any>) => void, base: object = SMOLVLM_256M_CONFIG) =>
    () =>
      conv(mut, base);

  it('implemented: Llama attention_bias (q/k/v and o_proj), llama3 and linear RoPE scaling in either field', () => {
    const b = conv((c) => {
      c.text_config.attention_bias = true;
    });
    expect([b.text.attnBias, b.text.oBias]).toEqual([true, true]);
    const l3 = conv((c) => {
      c.text_config.rope_parameters = {
        rope_type: 'llama3',
        rope_theta: 5e5,
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 8192,
      };
    });
    expect(l3.text).toMatchObject({
      ropeTheta: 5e5,
      ropeType: 'llama3',
      ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 },
    });
    // transformers 4's rope_scaling with the old "type" key
    const lin = conv((c) => {
      c.text_config.rope_scaling = { type: 'linear', factor: 2 };
    }, LLAVA_INTERLEAVE_05B_CONFIG);
    expect(lin.text).toMatchObject({ ropeType: 'linear', ropeScaling: { type: 'linear', factor: 2 }, ropeTheta: 1e6 });
    // an explicit default is the default; Qwen2's sliding-window fields switched off are fine
    expect(
      conv((c) => {
        c.text_config.rope_scaling = null;
        c.text_config.use_sliding_window = false;
        c.text_config.sliding_window = 4096;
      }, LLAVA_INTERLEAVE_05B_CONFIG).text.ropeScaling,
    ).toBeUndefined();
  });

  it('rejected, naming the field, the value and what is supported', () => {
    for (const type of ['dynamic', 'yarn', 'longrope', 'su']) {
      expect(
        bad((c) => {
          c.text_config.rope_scaling = { rope_type: type, factor: 2 };
        }),
      ).toThrow(`ckpt/config.json: field "text_config.rope_scaling.rope_type" is "${type}"; supported: default, linear, llama3`);
    }
    expect(
      bad((c) => {
        c.text_config.rope_parameters = { rope_type: 'yarn', rope_theta: 1e4, factor: 4 };
      }),
    ).toThrow('field "text_config.rope_parameters.rope_type" is "yarn"; supported: default, linear, llama3');
    expect(
      bad((c) => {
        c.text_config.rope_parameters = {
          rope_type: 'llama3',
          rope_theta: 1e4,
          factor: 8,
          high_freq_factor: 4,
          original_max_position_embeddings: 64,
        };
      }),
    ).toThrow('field "text_config.rope_parameters.low_freq_factor" is missing');
    expect(
      bad((c) => {
        c.text_config.partial_rotary_factor = 0.5;
      }),
    ).toThrow('field "text_config.partial_rotary_factor" is 0.5; only full rotary embeddings (1.0) are supported');
    expect(
      bad((c) => {
        c.text_config.use_sliding_window = true;
      }, LLAVA_INTERLEAVE_05B_CONFIG),
    ).toThrow('field "text_config.use_sliding_window" is true; sliding-window attention is not implemented');
    expect(
      bad((c) => {
        c.text_config.layer_types = ['full_attention', 'sliding_attention'];
      }, LLAVA_INTERLEAVE_05B_CONFIG),
    ).toThrow('field "text_config.layer_types" lists "sliding_attention"; only "full_attention" layers are supported');
    expect(
      bad((c) => {
        c.text_config.hidden_act = 'gelu';
      }),
    ).toThrow('field "text_config.hidden_act" is "gelu"; the decoder\'s MLP is SwiGLU: only "silu" is supported');
    expect(
      bad((c) => {
        c.vision_config.hidden_act = 'quick_gelu';
      }),
    ).toThrow('field "vision_config.hidden_act" is "quick_gelu"; supported: gelu_pytorch_tanh, gelu_new, gelu_fast, gelu');
    expect(
      bad((c) => {
        c.projector_hidden_act = 'relu';
      }, LLAVA_INTERLEAVE_05B_CONFIG),
    ).toThrow('field "projector_hidden_act" is "relu"; supported:');
    expect(
      bad((c) => {
        c.vision_config.num_channels = 1;
      }),
    ).toThrow('field "vision_config.num_channels" is 1; the image processors give RGB (3 channels)');
    expect(
      bad((c) => {
        c.text_config.head_dim = 63;
      }),
    ).toThrow('field "text_config.head_dim" (63) must be even');
  });
});

describe('family registry', () => {
  it('knows both families with their parts; a third family is one registration', () => {
    expect(registeredModelTypes()).toEqual(expect.arrayContaining(['idefics3', 'llava']));
    const s = familyForConfig(SMOLVLM_256M_CONFIG);
    expect([s.name, typeof s.parseConfig, typeof s.createProcessor, s.imagePlaceholder, typeof s.connector]).toEqual([
      'idefics3',
      'function',
      'function',
      '<image>',
      'function',
    ]);
    // a family that reads another model_type with Idefics3's parts: registered once, found by its config
    registerFamily({
      ...idefics3,
      name: 'toy',
      modelTypes: ['toyvlm'],
      parseConfig: (raw, file) =>
        ({ ...idefics3.parseConfig({ ...raw, model_type: 'idefics3' }, file), family: 'toy', modelType: 'toyvlm' }) as never,
    });
    const t = familyForConfig({ model_type: 'toyvlm' });
    expect(t.name).toBe('toy');
    expect(checkConfig({ ...clone(SMOLVLM_256M_CONFIG), model_type: 'toyvlm' })).toMatchObject({
      family: 'toy',
      modelType: 'toyvlm',
      tokensPerImage: 64,
    });
  });
});
