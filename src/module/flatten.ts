/**
 * Nested layers models as one flat functional model. Teachable Machine's base (a
 * Sequential holding a functional MobileNet) is the most common layers model users
 * have; flat, its inner layers can be the bottleneck, be fine-tuned and be counted.
 * Works on the Keras JSON topology before loading, so weights still load by name.
 */

/** `[layer name, node index, tensor index]` (Keras' inbound-node reference). */
type Ref = [string, number, number];

interface LayerConfig {
  class_name: string;
  config: Record<string, unknown> & { name?: string; layers?: LayerConfig[] | { layers: LayerConfig[] } };
  name?: string;
  inbound_nodes?: unknown[][];
}

const MODEL_CLASSES = new Set(['Sequential', 'Model', 'Functional']);

class NotFlattenable extends Error {}

function layersOf(model: LayerConfig): LayerConfig[] {
  const l = model.config.layers ?? (Array.isArray(model.config) ? (model.config as LayerConfig[]) : undefined);
  if (!l) throw new NotFlattenable('no layers');
  return Array.isArray(l) ? l : l.layers;
}

const nameOf = (l: LayerConfig): string => l.config.name ?? l.name ?? '';

function asRef(r: unknown): Ref {
  if (!Array.isArray(r) || typeof r[0] !== 'string') throw new NotFlattenable('unexpected reference');
  // Each layer is applied once in a flat model, so every reference is to node 0.
  if (r[1] !== 0) throw new NotFlattenable('shared layer');
  return [r[0], 0, Number(r[2] ?? 0)];
}

/**
 * Expands one model into flat layers. `inputs` are the references the model is
 * applied to inside its parent (undefined for the outermost one, which keeps its
 * own input layer). Returns the flat layers and the references of its outputs.
 */
function expand(model: LayerConfig, inputs: Ref[] | undefined): { layers: LayerConfig[]; inputs: Ref[]; outputs: Ref[] } {
  return model.class_name === 'Sequential' ? expandSequential(model, inputs) : expandFunctional(model, inputs);
}

function expandSequential(model: LayerConfig, inputs: Ref[] | undefined): { layers: LayerConfig[]; inputs: Ref[]; outputs: Ref[] } {
  const out: LayerConfig[] = [];
  const list = layersOf(model);
  let current: Ref | undefined = inputs?.[0];
  let ownInputs: Ref[] = inputs ?? [];
  for (const layer of list) {
    if (layer.class_name === 'InputLayer') {
      if (!current) {
        out.push({ ...layer, name: nameOf(layer), inbound_nodes: [] });
        current = [nameOf(layer), 0, 0];
        ownInputs = [current];
      }
      continue;
    }
    if (!current && !MODEL_CLASSES.has(layer.class_name)) {
      const shape = layer.config['batch_input_shape'] ?? layer.config['batchInputShape'];
      if (!shape) throw new NotFlattenable('no input shape');
      const name = `${nameOf(model)}_input`;
      out.push({ class_name: 'InputLayer', name, config: { batch_input_shape: shape, dtype: layer.config['dtype'] ?? 'float32', sparse: false, name }, inbound_nodes: [] });
      current = [name, 0, 0];
      ownInputs = [current];
    }
    if (MODEL_CLASSES.has(layer.class_name)) {
      const sub = expand(layer, current ? [current] : undefined);
      out.push(...sub.layers);
      if (!current) ownInputs = sub.inputs;
      if (sub.outputs.length !== 1) throw new NotFlattenable('a nested model with several outputs in a Sequential');
      current = sub.outputs[0]!;
      continue;
    }
    const { batch_input_shape: _drop, ...config } = layer.config as Record<string, unknown>;
    out.push({ ...layer, name: nameOf(layer), config: config as LayerConfig['config'], inbound_nodes: [[[...current!, {}]]] });
    current = [nameOf(layer), 0, 0];
  }
  if (!current) throw new NotFlattenable('an empty Sequential');
  return { layers: out, inputs: ownInputs, outputs: [current] };
}

function expandFunctional(model: LayerConfig, inputs: Ref[] | undefined): { layers: LayerConfig[]; inputs: Ref[]; outputs: Ref[] } {
  const cfg = model.config as { input_layers: unknown[]; output_layers: unknown[] };
  const inputRefs = cfg.input_layers.map(asRef);
  // What a reference to one of this model's tensors becomes in the flat model.
  const mapped = new Map<string, Ref[]>();
  const resolve = (r: Ref): Ref => {
    const m = mapped.get(r[0]);
    return m ? m[r[2]] ?? m[0]! : r;
  };
  if (inputs) inputRefs.forEach((r, i) => mapped.set(r[0], [inputs[i]!]));
  const out: LayerConfig[] = [];
  for (const layer of layersOf(model)) {
    const nodes = layer.inbound_nodes ?? [];
    if (nodes.length > 1) throw new NotFlattenable('shared layer');
    const refs = (nodes[0] ?? []).map((r) => resolve(asRef(r)));
    if (layer.class_name === 'InputLayer') {
      if (!inputs) out.push({ ...layer, name: nameOf(layer), inbound_nodes: [] });
      continue;
    }
    if (MODEL_CLASSES.has(layer.class_name)) {
      const sub = expand(layer, refs);
      out.push(...sub.layers);
      mapped.set(nameOf(layer), sub.outputs);
      continue;
    }
    out.push({ ...layer, name: nameOf(layer), inbound_nodes: [refs.map((r) => [...r, {}])] });
  }
  return { layers: out, inputs: inputs ?? inputRefs, outputs: cfg.output_layers.map((r) => resolve(asRef(r))) };
}

/**
 * The topology with nested models inlined, or undefined when there is nothing to
 * flatten (or the model is shaped in a way we do not flatten: shared layers).
 */
export function flattenTopology(topology: unknown): Record<string, unknown> | undefined {
  const t = topology as Record<string, unknown> & { model_config?: LayerConfig };
  const root = (t.model_config ?? t) as LayerConfig;
  if (!root?.class_name || !MODEL_CLASSES.has(root.class_name)) return undefined;
  let list: LayerConfig[];
  try {
    list = layersOf(root);
  } catch {
    return undefined;
  }
  if (!list.some((l) => MODEL_CLASSES.has(l.class_name))) return undefined;
  try {
    const flat = expand(root, undefined);
    const names = new Set(flat.layers.map(nameOf));
    if (names.size !== flat.layers.length) return undefined;
    const model: LayerConfig = {
      class_name: 'Model',
      config: {
        name: nameOf(root) || 'flattened',
        layers: flat.layers,
        input_layers: flat.inputs,
        output_layers: flat.outputs,
      } as unknown as LayerConfig['config'],
    };
    return t.model_config ? { ...t, model_config: model } : { ...t, ...model };
  } catch (err) {
    if (err instanceof NotFlattenable) return undefined;
    throw err;
  }
}
