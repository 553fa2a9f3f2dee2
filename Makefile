# Tools are pinned; `make tools` installs them into $(go env GOPATH)/bin.
BUF_VERSION                  := v1.75.0
PROTOC_GEN_GO_VERSION        := v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION := v1.21.1
GRPCURL_VERSION              := v1.9.4
VTPROTO_VERSION              := v0.6.0

GOBIN := $(shell go env GOPATH)/bin
export PATH := $(PATH):$(GOBIN)

.PHONY: help
help: ## Describe the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: run
run: ## Start the server with its defaults
	go run ./cmd/weir serve

.PHONY: test
test: ## Run every test with the race detector (the README's command)
	go test -race -timeout 30m ./...

.PHONY: bench
bench: ## Run the Go benchmarks of every stage
	go test -run '^$$' -bench . -benchmem ./...

.PHONY: fuzz
fuzz: ## Run every fuzz test for FUZZTIME each (default 10m)
	.ci/fuzz $(or $(FUZZTIME),10m)

.PHONY: lint
lint: ## go vet, gofmt and buf lint
	go vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	buf lint

.PHONY: generate
generate: ## Regenerate the protobuf and Connect code
	buf generate

.PHONY: generate-node
generate-node: ## Regenerate the Node.js example's code (needs node and npm)
	cd examples/node && npm ci --no-audit --no-fund && buf generate

.PHONY: checkgenerate
checkgenerate: generate generate-node ## Fail if the generated code is not current
	buf lint
	@git diff --exit-code -- proto examples/node/gen || (echo "generated code is stale: run make generate generate-node"; exit 1)
	@test -z "$$(git status --porcelain --untracked-files=all -- proto examples/node/gen)" || (git status --porcelain -- proto examples/node/gen; echo "generated code is stale: run make generate generate-node"; exit 1)

.PHONY: tools
tools: ## Install the pinned code generators and test tools
	go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	go install connectrpc.com/connect/cmd/protoc-gen-connect-go@$(PROTOC_GEN_CONNECT_GO_VERSION)
	go install github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto@$(VTPROTO_VERSION)
	go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
