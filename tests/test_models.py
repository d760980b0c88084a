"""The six networks: parameter counts from the design, layer semantics, L2 selection."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from fashion.models import (
    ConvNet,
    count_trainable,
    create_network,
    l2_penalty,
    l2_weights,
)
from fashion.tracking import PROJECT_ROOT

# trainable parameters for 3 classes, from the design document
EXPECTED_PARAMS = {
    "model_1": 100_867,
    "model_2": 420_739,
    "model_3": 420_739,
    "model_4": 420_739,
    "model_5": 420_739,
    "model_6": 420_867,
}


def model_config(name: str):
    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[f"model={name}"]).model


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_trainable_params_match_design(name: str) -> None:
    cfg = model_config(name)
    net = create_network(cfg.arch, 3, dropout=cfg.dropout, batch_norm=cfg.batch_norm)
    assert count_trainable(net) == EXPECTED_PARAMS[name]
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 3)
    l2_weights(net, list(cfg.l2_layers))  # every named L2 layer exists


def test_fine_task_changes_only_the_output_layer() -> None:
    three, ten = ConvNet(3), ConvNet(10)
    # the output layer gains 7 rows of 128 weights and 7 biases
    assert count_trainable(ten) - count_trainable(three) == 7 * 129


def test_l2_penalty_covers_named_kernels_only() -> None:
    net = ConvNet(3)
    for parameter in net.parameters():
        torch.nn.init.constant_(parameter, 1.0)
    weights = l2_weights(net, ["fc2"])
    # fc2 kernel is 3 x 128 ones; its bias is excluded, as with Keras' kernel_regularizer
    assert float(l2_penalty(weights, 0.5)) == pytest.approx(0.5 * 3 * 128)
    assert l2_penalty(weights, 0.0) == 0.0


def test_unknown_l2_layer_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"fc9.*choose from \['conv1', 'conv2', 'fc1', 'fc2'\]"):
        l2_weights(ConvNet(3), ["fc9"])


def test_mlp_rejects_dropout() -> None:
    with pytest.raises(ValueError, match="model.arch=mlp takes no dropout"):
        create_network("mlp", 3, dropout=0.5)


def test_model_6_places_batch_norm_after_second_conv() -> None:
    net = create_network("cnn", 3, dropout=0.25, batch_norm=True)
    assert isinstance(net.norm2, torch.nn.BatchNorm2d) and net.norm2.num_features == 64
