import jax
import jax.numpy as jnp
import numpy as np
import pytest

from octseg_jax.cam import faithfulness
from octseg_jax.cam import gradcam
from octseg_jax.models.segnet import SegNet

LAYERS = ("dec0_conv1", "head")


@pytest.fixture(scope="module")
def model_and_vars():
  model = SegNet(widths=(4, 8), num_classes=8)
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 16, 16)).astype(np.float32))
  variables = model.init(jax.random.key(0), x, train=False)
  # One training-mode pass so batch_stats are not the initial zeros/ones.
  _, upd = model.apply(variables, x, train=True, mutable=["batch_stats"])
  variables = {"params": variables["params"], "batch_stats": upd["batch_stats"]}
  return model, variables, x


def test_alpha_equals_head_weights_for_the_layer_feeding_the_linear_head(model_and_vars):
  model, v, x = model_and_vars
  logits, acts, grads = gradcam.class_gradients(model, v, x, LAYERS, "all")
  w = np.asarray(v["params"]["head"]["kernel"])[0, 0]           # [C, K]
  _, alpha = gradcam.cam_from_gradients(acts["dec0_conv1"], grads["dec0_conv1"], "gradcam")
  for b in range(2):
    # Y^c = sum_ij (A_ij . W[:, c] + bias_c): dY^c/dA_ijk = W[k, c] at every pixel; alpha is a
    # float32 mean over the pixels, summed in two stages: relative error ~1e-7 per element.
    np.testing.assert_allclose(np.asarray(alpha, np.float64)[:, b, :], w.T, rtol=1e-5,
                               atol=1e-6 * np.abs(w).max())
  # Ablation-CAM's secant slope equals the same weights where the score is linear in A.
  out = gradcam.explain_batch(model, v, x, ("dec0_conv1", "head"), "ablation")
  np.testing.assert_allclose(np.asarray(out["dec0_conv1"]["alpha"], np.float64)[:, 0, :], w.T,
                             rtol=1e-4, atol=1e-5 * np.abs(w).max())
  np.testing.assert_allclose(np.asarray(out["head"]["alpha"])[:, 1, :], np.eye(8), atol=1e-5)
  # At the head itself, dY^c/dA^k = 1 if k == c: alpha is the identity.
  _, alpha_head = gradcam.cam_from_gradients(acts["head"], grads["head"], "gradcam")
  np.testing.assert_allclose(np.asarray(alpha_head)[:, 0, :], np.eye(8), atol=1e-7)


def test_vmapped_pullback_equals_separate_grads(model_and_vars):
  model, v, x = model_and_vars
  _, _, grads = gradcam.class_gradients(model, v, x, ("dec1_conv0",), "predicted")
  shapes = gradcam.activation_shapes(model, v, x, ("dec1_conv0",))
  f = gradcam.forward_with_taps(model, v, x, ("dec1_conv0",))
  zeros = {l: jnp.zeros(s.shape) for l, s in shapes.items()}
  logits = f(zeros)[0]
  weights = gradcam.score_masks(logits, "predicted")
  # One class's score at a time: a plain jax.grad per class (one compile, the class an argument).
  single = jax.jit(jax.grad(lambda p, onehot: jnp.sum(f(p)[0] * weights * onehot)))
  for c in range(8):
    g = single(zeros, jnp.eye(8)[c][None, None, None])
    np.testing.assert_allclose(grads["dec1_conv0"][c], g["dec1_conv0"], rtol=1e-5, atol=1e-6)


def test_central_finite_differences_float64():
  with jax.enable_x64(True):
    model = SegNet(widths=(4, 8), num_classes=8, dtype=jnp.float64)
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(1, 16, 16)))
    v = jax.jit(lambda key: model.init(key, x, train=False))(jax.random.key(0))
    # Random BatchNorm shifts: at init they are 0, and with unpooling's zeros some ReLU
    # inputs are then exactly 0, a kink where a finite difference sees a one-sided slope.
    leaves, tree = jax.tree.flatten(v)
    noise = np.random.default_rng(2)
    v = jax.tree.unflatten(tree, [jnp.asarray(np.asarray(a, np.float64)
                                              + 0.1 * noise.normal(size=a.shape)) for a in leaves])
    v = {"params": v["params"], "batch_stats": jax.tree.map(jnp.abs, v["batch_stats"])}
    layer = "dec1_conv1"
    _, _, grads = gradcam.class_gradients(model, v, x, (layer,), "all")
    shapes = gradcam.activation_shapes(model, v, x, (layer,))
    f = jax.jit(gradcam.forward_with_taps(model, v, x, (layer,)))
    eps = 1e-6
    for c, idx in ((2, (0, 3, 5, 1)), (5, (0, 7, 0, 3)), (0, (0, 1, 6, 2))):
      e = jnp.zeros(shapes[layer].shape, jnp.float64).at[idx].set(eps)
      up = jnp.sum(f({layer: e})[0][..., c])
      down = jnp.sum(f({layer: -e})[0][..., c])
      np.testing.assert_allclose(grads[layer][c][idx], (up - down) / (2 * eps), rtol=1e-6)


def test_maps_shapes_nonnegative_and_jit_equals_eager(model_and_vars):
  model, v, x = model_and_vars
  for method in gradcam.METHODS:
    eager = gradcam.explain_batch(model, v, x, LAYERS, method, "all")
    jitted = jax.jit(lambda v, x: gradcam.explain_batch(model, v, x, LAYERS, method, "all"))(v, x)
    for l in LAYERS:
      raw = np.asarray(eager[l]["raw"])
      assert raw.shape == (8, 2, 16, 16) and (raw >= 0).all()
      norm = np.asarray(eager[l]["norm"])
      assert norm.max() <= 1.0 + 1e-6 and norm.min() >= 0
      peaks = norm.reshape(16, -1).max(axis=1)
      assert np.all((np.abs(peaks - 1) < 1e-6) | (peaks == 0))
      np.testing.assert_allclose(raw, np.asarray(jitted[l]["raw"]), rtol=1e-5, atol=1e-6)


def test_box_target_gives_zero_gradient_outside_the_box(model_and_vars):
  model, v, x = model_and_vars
  box = (4, 2, 9, 12)
  _, _, grads = gradcam.class_gradients(model, v, x, ("head",), "box", box)
  g = np.asarray(grads["head"])                                  # [K, B, H, W, K]
  inside = np.zeros((16, 16), bool)
  inside[4:9, 2:12] = True
  for c in range(8):
    assert (g[c][:, ~inside] == 0).all()
    np.testing.assert_array_equal(g[c][:, inside][..., c], 1.0)


@pytest.mark.parametrize("method", ["gradcam", "ablation"])
def test_a_scans_extent_keeps_padding_out_of_scores_and_maps(model_and_vars, method):
  """extent = the whole input changes nothing; a smaller one (the rest padding) zeroes the
  score weights and the maps beyond it, and each nonzero map peaks at 1 inside it. Against
  the whole input's class scores restricted by hand (weights)."""
  model, v, x = model_and_vars
  full = gradcam.explain_batch(model, v, x, ("dec0_conv1",), method)
  same = gradcam.explain_batch(model, v, x, ("dec0_conv1",), method, extent=(16, 16))
  np.testing.assert_array_equal(np.asarray(same["dec0_conv1"]["raw"]),
                                np.asarray(full["dec0_conv1"]["raw"]))
  cut = gradcam.explain_batch(model, v, x, ("dec0_conv1",), method, extent=(12, 10))
  inside = np.zeros((16, 16), bool)
  inside[:12, :10] = True
  weights = np.broadcast_to(inside[None, :, :, None], (2, 16, 16, 8)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(gradcam.score_masks(full["logits"], "all", (),
                                                               (12, 10))), weights)
  by_hand = gradcam.explain_batch(model, v, x, ("dec0_conv1",), method,
                                  weights=jnp.asarray(weights))["dec0_conv1"]["raw"]
  raw, norm = (np.asarray(cut["dec0_conv1"][k]) for k in ("raw", "norm"))
  assert (raw[..., ~inside] == 0).all() and (norm[..., ~inside] == 0).all()
  np.testing.assert_allclose(raw[..., inside], np.asarray(by_hand)[..., inside], rtol=1e-5,
                             atol=1e-6)
  peaks = norm[..., inside].max(axis=-1)
  np.testing.assert_allclose(peaks[raw[..., inside].max(axis=-1) > 0], 1.0, rtol=1e-6)


def test_deletion_orders_a_faithful_map_ahead_of_random():
  rng = np.random.default_rng(0)
  image = jnp.asarray(rng.uniform(0.0, 0.2, size=(12, 12)))
  region = np.zeros((12, 12), bool)
  region[3:7, 2:9] = True
  image = jnp.where(region, 1.0, image)
  fractions = jnp.linspace(0, 1, 11)
  # A toy class score: mean brightness of the region (positive, falls when it is deleted).
  score = lambda imgs: jnp.mean(imgs[:, region], axis=1) + 0.01
  faithful = jnp.asarray(region, jnp.float32) + 0.001 * jnp.asarray(rng.uniform(size=(12, 12)))
  random = jnp.asarray(rng.uniform(size=(12, 12)))
  tiebreak = jnp.zeros((12, 12))
  fill = jnp.float32(0.0)
  delete = lambda r: faithfulness.deletion_images(
      image, faithfulness.removal_masks(r, tiebreak, fractions), fill)
  area_f = faithfulness.curve_area(fractions, score(delete(faithful)))
  area_r = faithfulness.curve_area(fractions, score(delete(random)))
  assert float(area_f) < 0.3 < float(area_r)
  # Batched curves [K, S] give the same areas as one at a time; a flat curve has area 1.
  curves = jnp.stack([score(delete(r)) for r in (faithful, random)] + [jnp.full(11, 0.7)])
  np.testing.assert_allclose(faithfulness.curve_area(fractions, curves),
                             [float(area_f), float(area_r), 1.0], rtol=1e-12)
  imgs = delete(faithful)
  np.testing.assert_array_equal(imgs[0], image)
  assert (np.asarray(imgs[-1]) == 0).all()
  assert int((np.asarray(imgs[3]) == 0).sum()) == round(0.3 * 144)


def test_explaining_changes_no_variable_and_uses_running_averages(model_and_vars):
  model, v, x = model_and_vars
  before = jax.tree.map(np.array, v)
  out = gradcam.explain_batch(model, v, x, LAYERS, "gradcampp", "predicted")
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.array, v))
  np.testing.assert_allclose(out["logits"], model.apply(v, x, train=False), rtol=1e-6)


def test_localisation_shares():
  raw = jnp.zeros((2, 4, 4)).at[0, :2].set(1.0).at[1, :, :1].set(1.0)
  regions = jnp.zeros((4, 4), jnp.int32).at[2:].set(1)
  mass, area = gradcam.localisation(raw, regions, jnp.ones((4, 4), bool))
  np.testing.assert_allclose(mass, [1.0, 0.5])
  np.testing.assert_allclose(area, [0.5, 0.5])


def test_unknown_layer_and_method_raise(model_and_vars):
  model, v, x = model_and_vars
  with pytest.raises(ValueError, match="unknown layer"):
    gradcam.class_gradients(model, v, x, ("dec9_conv0",))
  with pytest.raises(ValueError, match="unknown CAM method"):
    gradcam.cam_from_gradients(jnp.zeros((1, 2, 2, 3)), jnp.zeros((8, 1, 2, 2, 3)), "scorecam")


def wide_network_reference(model, members, x, layer, flip, method, target):
  """The plain reference for one ensemble map: (map [K, B, H, W] before normalising, the views'
  alphas side by side, the averaged probabilities), from jax.jacrev of the mean class score."""
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  taps = jax.jit(lambda v, x: gradcam.forward_with_taps(model, v, x, (layer,))(None))
  views = [(v, False) for _, v in members] + ([(v, True) for _, v in members] if flip else [])
  probs = np.mean([np.asarray(jax.nn.softmax(apply(v, jnp.flip(x, 2) if m else x),
                                             -1))[:, :, ::-1 if m else 1]
                   for v, m in views], axis=0)                          # [B, H, W, K]
  weights = (np.ones_like(probs) if target == "all" else
             np.eye(8, dtype=np.float32)[np.argmax(probs, -1)])
  shapes = gradcam.activation_shapes(model, members[0][1], x, (layer,))
  perts = [{layer: jnp.zeros(shapes[layer].shape)} for _ in views]

  def ensemble_scores(perts):                              # [K]: the mean of the views' scores
    total = 0.0
    for (v, mirrored), p in zip(views, perts):
      xv, w = (jnp.flip(x, 2), weights[:, :, ::-1]) if mirrored else (x, weights)
      logits, _ = gradcam.forward_with_taps(model, v, xv, (layer,))(p)
      total = total + jnp.sum(logits * w, axis=(0, 1, 2))
    return total / len(views)

  jacobian = jax.jit(jax.jacrev(ensemble_scores))(perts)   # per view {layer: [K, B, h, w, C]}
  wide, alphas = {"gradcam": 0.0, "hirescam": 0.0}, []
  for (v, mirrored), g in zip(views, jacobian):
    _, acts = taps(v, jnp.flip(x, 2) if mirrored else x)
    alpha = g[layer].mean(axis=(2, 3))                                    # [K, B, C]
    alphas.append(np.asarray(alpha))
    for name, cam in (("gradcam", jnp.einsum("bhwc,kbc->kbhw", acts[layer], alpha)),
                      ("hirescam", jnp.sum(g[layer] * acts[layer][None], axis=-1))):
      wide[name] = wide[name] + np.asarray(jnp.flip(cam, -1) if mirrored else cam)
  expected = gradcam.upsample(jax.nn.relu(jnp.asarray(wide[method])), x.shape[1:])
  return expected, np.concatenate(alphas, -1), probs


def test_an_ensembles_map_is_the_map_of_its_averaged_score():
  """Two members of different initialisation, explained as one wide network: Grad-CAM of the
  mean class score, from jax.jacrev through both members at once (each member's activations
  perturbed), with the map ReLU(sum over the views' channels of weight x activation), the
  mirrored views' maps mirrored back at the layer's resolution before the ReLU. With flip the
  views are the members on the input and on its mirror (checked with hirescam and target
  'predicted', whose pixel sets come from the averaged probabilities and are mirrored for the
  mirrored views). alpha is the views' alphas side by side; gradcampp is refused; one member
  without flip is explain_batch."""
  model = SegNet(widths=(4, 8), num_classes=8)
  x = jnp.asarray(np.random.default_rng(3).uniform(size=(1, 16, 16)).astype(np.float32))
  init = jax.jit(lambda key: model.init(key, x, train=False))
  members = [(model, init(jax.random.key(s))) for s in (0, 1)]
  layer = "dec1_conv0"
  for flip, method, target in ((False, "gradcam", "all"), (True, "hirescam", "predicted")):
    expected, alphas, probs = wide_network_reference(model, members, x, layer, flip, method,
                                                     target)
    got = jax.jit(lambda x: gradcam.ensemble_maps(members, x, (layer,), method, target,
                                                  flip=flip))(x)
    np.testing.assert_allclose(np.asarray(got[layer]["raw"]), np.asarray(expected), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(np.asarray(got[layer]["alpha"]), alphas, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(np.asarray(jax.nn.softmax(got["logits"], -1)), probs, rtol=1e-5)
  with pytest.raises(ValueError, match="linear in the gradient"):
    gradcam.ensemble_maps(members, x, (layer,), "gradcampp")
  one = jax.jit(lambda x: gradcam.ensemble_maps(members[:1], x, (layer,), "gradcam"))(x)
  ref = jax.jit(lambda v, x: gradcam.explain_batch(model, v, x, (layer,), "gradcam"))(
      members[0][1], x)
  for key in ("raw", "alpha", "act_max"):
    np.testing.assert_allclose(np.asarray(one[layer][key]), np.asarray(ref[layer][key]),
                               rtol=1e-5, atol=1e-7)


def test_every_target_has_the_words_its_figures_use():
  assert set(gradcam.TARGET_TEXT) == set(gradcam.TARGETS)


@pytest.mark.parametrize("heads", [{}, {"fluid_head": True},
                                   {"fluid_head": True, "boundary_head": True}])
def test_the_module_feeding_the_class_head_with_every_head(heads):
  """cam_report's alpha meaning needs the class head and the module before it; the fluid and
  boundary heads come after the class head in the forward pass."""
  import types
  from octseg_jax.modes.explain import feeding_class_head
  model = SegNet(widths=(4, 8), num_classes=8, **heads)
  x = jnp.zeros((1, 16, 16))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  order = gradcam.top_level_order(model, variables, x)
  assert feeding_class_head(types.SimpleNamespace(model=model, variables=[variables]), x) == [
      "dec0_conv1", "head"]
  assert (order[-2:] == ("dec0_conv1", "head")) == (not heads)    # the old reading's failure
