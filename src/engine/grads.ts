/** Named gradients summed on the host in float64 (the engine's backward passes, micro-batches, samples). */

/** add a gradient into a running sum (the map takes over arrays it did not have) */
export function addGradient(into: Map<string, Float64Array>, name: string, g: ArrayLike<number>): void {
  const acc = into.get(name);
  if (!acc) {
    into.set(name, g instanceof Float64Array ? g : Float64Array.from(g));
    return;
  }
  for (let i = 0; i < g.length; i++) acc[i] += g[i];
}

/** add named gradients into a running sum */
export function addGradients(into: Map<string, Float64Array>, from: ReadonlyMap<string, ArrayLike<number>>): void {
  for (const [k, g] of from) addGradient(into, k, g);
}
