# llamago: the one entry point. `make` = deps + llama.cpp libs for BACKEND + go build.
#   make                      fetch llama.cpp, build the CPU archives, build every package
#   make BACKEND=cuda         the same for CUDA (then: go build -tags cuda ./...)
#   make libs CPU=portable    rebuild the archives for a CPU baseline that runs on other machines
#                             (x86-64-v3; default CPU=native: tuned for this one)
#   make test                 what CI runs: deps, CPU libs, go vet (every tag), go test -race,
#                             then the suite again with GOEXPERIMENT=cgocheck2 (full cgo pointer checks)
#   make run [MODEL=x.gguf]   streaming generation demo (models/kjv-demo.gguf when no MODEL)
#   make chat [MODEL=x.gguf]  interactive chat (examples/chat; models/kjv-demo.gguf when no MODEL)
#   make serve [MODEL=x.gguf] OpenAI-compatible server on 127.0.0.1:8080 (examples/server)
#   make bench [MODEL=x.gguf] [ARGS="-p 512 -n 128"]   ours vs llama-bench, same build
BACKEND ?= cpu
GO      ?= go
TAGS    := $(filter-out cpu,$(BACKEND))
GOFLAGS_TAGS := $(if $(TAGS),-tags $(TAGS))
export LLAMAGO_CPU := $(or $(CPU),native)
# Written last by scripts/build-llama.sh: this backend's archives and headers are complete
# (builds made before it existed lack the RPC archive and llama.cpp's internal headers).
LIBS    := third_party/build/$(BACKEND)/llamago-backend.h
# Upstream tools of the same build that tests and scripts compare against.
export LLAMA_TOOLS ?= llama-bench llama-perplexity llama-batched-bench llama-completion llama-speculative llama-mtmd-cli

.PHONY: all deps libs build test vet run chat serve bench perplexity-compare gpu-pack clean distclean

all: build

# Idempotent and offline once cached: verifies the pinned tree is in place.
deps:
	bash scripts/fetch-llama.sh

libs: deps
	bash scripts/build-llama.sh $(BACKEND)

# Libraries are rebuilt only when missing; run `make libs` after changing llama.cpp.
$(LIBS): | deps
	bash scripts/build-llama.sh $(BACKEND)

build: $(LIBS)
	$(GO) build $(GOFLAGS_TAGS) ./...

vet: $(LIBS)
	$(GO) vet ./...
	$(GO) vet -tags rpc ./...
	# Backends not built here: type-checked against the shared headers (llama/native.h).
	CGO_CPPFLAGS=-DLLAMAGO_TYPECHECK_ONLY $(GO) vet -tags cuda ./...
	CGO_CPPFLAGS=-DLLAMAGO_TYPECHECK_ONLY $(GO) vet -tags vulkan ./...
	CGO_CPPFLAGS=-DLLAMAGO_TYPECHECK_ONLY $(GO) vet -tags "cuda rpc" ./...
	@if [ "$$(uname -s)" != Darwin ]; then \
	  $(GO) vet -tags metal ./llama/ 2>&1 | grep -q build_tag_metal_requires_darwin_macOS && \
	  echo "vet: -tags metal off macOS fails with build_tag_metal_requires_darwin_macOS, as intended"; fi
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

test: vet
	$(GO) test -race -timeout 45m $(GOFLAGS_TAGS) ./...
	GOEXPERIMENT=cgocheck2 $(GO) test -timeout 45m $(GOFLAGS_TAGS) ./...
	$(GO) test -race -timeout 20m -tags "$(strip $(TAGS) rpc)" -run RPC ./llama/ ./examples/rpc-server/

run: $(LIBS)
	$(GO) run $(GOFLAGS_TAGS) ./examples/generate $(if $(MODEL),-m $(MODEL)) $(ARGS)

chat: $(LIBS)
	$(GO) run $(GOFLAGS_TAGS) ./examples/chat $(if $(MODEL),-m $(MODEL)) $(ARGS)

serve: $(LIBS)
	$(GO) run $(GOFLAGS_TAGS) ./examples/server $(if $(MODEL),-m $(MODEL)) $(ARGS)

# Ours against upstream llama-bench of the same build, alternating (scripts/bench-compare.sh).
bench: $(LIBS)
	BACKEND=$(BACKEND) bash scripts/bench-compare.sh $(MODEL) $(ARGS)

# examples/perplexity against upstream llama-perplexity of the same build.
perplexity-compare: $(LIBS)
	bash scripts/perplexity-compare.sh $(MODEL) $(ARGS)

# Packs toolchain, modules and llama.cpp into .device/ for an offline GPU machine (README, "GPU").
gpu-pack:
	bash scripts/gpu-pack.sh

clean:
	rm -rf third_party/build

distclean: clean
	rm -rf third_party/llama.cpp
