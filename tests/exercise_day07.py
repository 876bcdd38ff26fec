"""The classroom exercise's linear probe (day07, section 5: ResNet18 transfer learning on ``data/train/{class}``),
run on a folder given on the command line: python tests/exercise_day07.py <output>/imagefolder/train

The four code blocks between the markers are the exercise's, unchanged (its comments included). Around them, what
the exercise leaves out: the transform, the ``ImageFolder`` and its loader, and the model, built without weights
(the exercise loads ImageNet's; nothing is downloaded here). Prints one JSON line: classes, images, steps, loss.
"""

import json
import sys

import torch
import torch.nn as nn
import torch.optim as optim
from torchvision import datasets, models, transforms

transform = transforms.Compose([transforms.Resize((64, 64)), transforms.ToTensor()])
train_dataset = datasets.ImageFolder(sys.argv[1], transform=transform)
train_loader = torch.utils.data.DataLoader(train_dataset, batch_size=4, shuffle=True)
model = models.resnet18(weights=None)
steps = 0

# --- the exercise's code, unchanged ---
# (1) 가중치 고정
for p in model.parameters():
    p.requires_grad = False

# (2) 출력층 교체
num_features = model.fc.in_features
model.fc = nn.Linear(num_features, len(train_dataset.classes))  # 2개 클래스

# (3) 손실함수 및 옵티마이저
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.fc.parameters(), lr=0.001, momentum=0.9)

for inputs, labels in train_loader:
    # (4) 학습 루프
    optimizer.zero_grad()
    outputs = model(inputs)
    loss = criterion(outputs, labels)
    loss.backward()
    optimizer.step()
    # --- end of the exercise's code ---
    steps += 1

report = {"classes": train_dataset.classes, "images": len(train_dataset), "steps": steps, "loss": loss.item()}
print(json.dumps(report, ensure_ascii=False))
