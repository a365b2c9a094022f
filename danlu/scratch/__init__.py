"""danlu.scratch: a neural network in vectorized numpy, small enough to read in one sitting.

Every op keeps its backward next to its forward (micrograd's habit) and float64 is the default, so that
tests/test_scratch.py can check each value and gradient against torch.autograd to 1e-6 and against finite
differences. No torch import here: this is the math the articles teach, done right and checked.

    from danlu import scratch as s
    model = s.Sequential(s.Dense(64, 32, seed=0), s.ReLU(), s.Dense(32, 10, seed=1))
    s.fit(model, s.CrossEntropy(), s.Adam(model.parameters(), lr=1e-3), x, y, epochs=20, batch_size=32)
    print(s.accuracy(model, x_test, y_test))
"""

from danlu.scratch.gradcheck import numerical_grad, relative_error
from danlu.scratch.layers import Dense, Layer, Parameter, ReLU, Sequential, Sigmoid, Softmax, Tanh, sigmoid
from danlu.scratch.losses import MSE, BinaryCrossEntropy, CrossEntropy, Loss
from danlu.scratch.optim import SGD, Adam, Optimizer
from danlu.scratch.train import accuracy, batches, fit, predict

__all__ = ["Parameter", "Layer", "Dense", "Sigmoid", "Tanh", "ReLU", "Softmax", "Sequential", "sigmoid",
           "Loss", "MSE", "BinaryCrossEntropy", "CrossEntropy", "Optimizer", "SGD", "Adam",
           "batches", "fit", "predict", "accuracy", "numerical_grad", "relative_error"]
