# Thin wrappers over the npm scripts, for hands used to operator projects.
.PHONY: help install-deps test test-e2e lint lint-fix build run manifests generate

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

node_modules: package.json package-lock.json
	npm ci
	@touch node_modules

test: node_modules ## Unit, integration and end-to-end tests
	npm test

test-e2e: node_modules ## End-to-end tests only (real guests)
	npm run test:e2e

lint: node_modules ## Formatting, lint rules and type checks
	npm run lint

lint-fix: node_modules ## Apply formatting and safe lint fixes
	npm run lint:fix

build: node_modules ## Compile TypeScript to dist/js
	npm run build

run: node_modules ## Run the operator against the current kubeconfig
	npm run operator

manifests: node_modules ## Regenerate config/crd/bases from src/api
	npm run manifests

generate: manifests ## Alias: the API types and CRDs come from one source

# Installing into a cluster (docs/install.md). kubectl and its built-in kustomize come from
# hack/kube-binaries.sh unless KUBECTL is given; the current kubeconfig picks the cluster.
.PHONY: install uninstall deploy undeploy build-installer helm-lint

KUBECTL ?= $(shell bash hack/kube-binaries.sh | tail -n 1)/kubectl
HELM ?= $(shell bash hack/helm.sh | tail -n 1)/helm
IMG ?= registry.example.com/imp/operator:0.1.0
# The agent image; by default IMG's tag with "-agent" appended (example.com/imp:v1-agent).
AGENT_IMG ?= $(IMG)-agent
INSTALLER ?= dist/install.yaml

# config/default with the images set: a throwaway overlay, since kustomize bases stay
# untouched and `kubectl kustomize` has no `edit set image`.
define render-default
	tmp="$$(mktemp -d)" && trap 'rm -rf "$$tmp"' EXIT && \
	printf '%s\n' 'apiVersion: kustomize.config.k8s.io/v1beta1' 'kind: Kustomization' \
	  "resources: [$$(realpath --relative-to="$$tmp" config/default)]" 'images:' \
	  '  - name: imp-operator' '    newName: $(IMG)' '  - name: imp-agent' \
	  '    newName: $(AGENT_IMG)' > "$$tmp/kustomization.yaml" && \
	$(KUBECTL) kustomize "$$tmp"
endef

install: ## Install the CRDs into the current cluster
	$(KUBECTL) apply --server-side -k config/crd

uninstall: ## Remove the CRDs, and with them every Imp object in the cluster
	$(KUBECTL) delete --ignore-not-found -k config/crd

deploy: ## Deploy Imp with kustomize: make deploy IMG=... [AGENT_IMG=...]
	@$(render-default) | $(KUBECTL) apply --server-side --force-conflicts -f -
	$(KUBECTL) wait --for=condition=Established --timeout=60s -f config/crd/bases
	$(KUBECTL) apply --server-side -k config/defaults

undeploy: ## Remove what deploy installed, except the CRDs (make uninstall removes those)
	$(KUBECTL) delete --ignore-not-found --wait=false -k config/defaults
	@$(render-default) | $(KUBECTL) delete --ignore-not-found --wait=false \
	  -l app.kubernetes.io/part-of=imp -f -

build-installer: ## Write one install bundle: make build-installer IMG=... (dist/install.yaml)
	@mkdir -p "$$(dirname "$(INSTALLER)")"
	@$(render-default) > "$(INSTALLER)"
	@echo "wrote $(INSTALLER)"

helm-lint: ## Lint the Helm chart
	$(HELM) lint charts/imp
