# Loads a Homebrew formula outside Homebrew and prints its `service do` block as JSON: the
# program arguments and settings that `brew services` writes into the agent's plist. Only the
# parts of Homebrew's DSL a formula's class body and service block call are stood in for;
# `run` and the paths are evaluated as Homebrew evaluates them (Pathname joins).
# Usage: ruby brew_service.rb FORMULA HOMEBREW_PREFIX
require "json"
require "pathname"

FORMULA_PATH, PREFIX = ARGV

module Language
  module Python
    module Virtualenv; end
  end
end

class Formula
  class << self
    attr_reader :service_block

    # desc, homepage, url, sha256, license, depends_on, resource: recorded nowhere.
    def method_missing(_name, *_args, &_block) = nil
    def respond_to_missing?(*) = true
    def service(&block) = (@service_block = block)
    def test(&_block) = nil
  end

  def name = self.class.name.gsub(/([a-z])([A-Z])/, '\1-\2').downcase
  def opt_prefix = Pathname(PREFIX)/"opt"/name
  def opt_libexec = opt_prefix/"libexec"
  def opt_bin = opt_prefix/"bin"
  def var = Pathname(PREFIX)/"var"
end

# Homebrew::Service's DSL, as far as a service block uses it.
class Service
  attr_reader :fields

  def initialize(formula)
    @formula = formula
    @fields = {}
  end

  def std_service_path_env = "#{PREFIX}/bin:#{PREFIX}/sbin:/usr/bin:/bin:/usr/sbin:/sbin"
  def run(command) = (@fields["run"] = Array(command).map(&:to_s))
  def environment_variables(vars) = (@fields["environment_variables"] = vars.transform_keys(&:to_s))
  def keep_alive(value) = (@fields["keep_alive"] = value)
  def process_type(value) = (@fields["process_type"] = value.to_s)
  def log_path(path) = (@fields["log_path"] = path.to_s)
  def error_log_path(path) = (@fields["error_log_path"] = path.to_s)

  def method_missing(name, *args, &block)
    return @formula.public_send(name, *args, &block) if @formula.respond_to?(name)

    @fields[name.to_s] = args.map(&:to_s)
  end

  def respond_to_missing?(*) = true
end

load FORMULA_PATH
klass = Object.const_get(File.basename(FORMULA_PATH, ".rb").split("-").map(&:capitalize).join)
service = Service.new(klass.new)
service.instance_eval(&klass.service_block)
puts JSON.generate(service.fields)
